"""The ``modelserve serve`` command as an operator runs it: port 0, logged port, clean SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import IRIS_REQUEST


def _read_until(proc: subprocess.Popen[str], pattern: str) -> tuple[re.Match[str], list[str]]:
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match, seen
    raise AssertionError(f"server exited before logging {pattern!r}:\n{''.join(seen)}")


def test_serve_binds_port_zero_logs_it_and_stops_on_sigterm(repo: Path) -> None:
    command = [sys.executable, "-m", "modelserve.cli", "serve", str(repo), "--http-port", "0"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as proc:
        try:
            match, _ = _read_until(proc, r"listening on (http://127\.0\.0\.1:(\d+))")
            assert int(match.group(2)) > 0
            _read_until(proc, r"'iris' version 1 READY")
            with httpx.Client(base_url=match.group(1)) as client:
                assert client.post("/v2/models/iris/infer", json=IRIS_REQUEST).json()["outputs"][0]["data"] == [0]
            proc.send_signal(signal.SIGTERM)
            _read_until(proc, r"stopped")
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()


def test_serve_missing_repository_exits_non_zero(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelserve.cli", "serve", str(tmp_path / "nope"), "--http-port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "not a directory" in result.stderr
