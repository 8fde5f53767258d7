"""The registry's database under faults: a full disk while registering, and a lock held by another
writer while a server switches versions. Nothing half-done is left, and serving never stops."""

from __future__ import annotations

import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner

from modelserve import testing
from modelserve.cli.main import main
from modelserve.repository.registry import RegistryStore, Stage, default_url
from tests.fixtures.models import _save_onnx, adder_model

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}


def _artifact(root: Path, k: int) -> Path:
    """A version directory whose model adds ``k``, with a warmup sample, outside the repository."""
    version = root / f"adds-{k}"
    _save_onnx(version / "model.onnx", adder_model(float(k)))
    (version / "warmup").mkdir()
    (version / "warmup" / "000.json").write_bytes(orjson.dumps(BODY))
    return version


def _register_command(repo: Path, artifact: Path) -> list[str]:
    cli = [sys.executable, "-m", "modelserve.cli", "registry", "--repository", str(repo), "--actor", "ci"]
    return [*cli, "register", str(artifact), "--name", "adder"]


def _small_disk() -> None:
    """In the child: files may not grow past 100 kB, as on a full disk (EFBIG instead of a signal)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


def test_registering_on_a_full_disk_fails_cleanly_and_changes_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    artifact = _artifact(tmp_path / "build", 1)
    full = subprocess.run(
        _register_command(repo, artifact), capture_output=True, text=True, preexec_fn=_small_disk, timeout=120
    )
    assert full.returncode == 1, full.stdout + full.stderr
    assert "register model 'adder' version 1" in full.stderr and "Traceback" not in full.stderr
    assert not (repo / "adder").exists() or list((repo / "adder").iterdir()) == []  # no half-copied version
    # the disk has room again: the same registration goes through, as version 1
    again = subprocess.run(_register_command(repo, artifact), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    with RegistryStore(default_url(repo)) as store:
        assert [(v.version, v.stage) for v in store.versions("adder")] == [(1, Stage.NONE)]
        assert [entry.action.value for entry in store.history()] == ["register"]


def test_a_locked_registry_never_stops_serving_and_a_promotion_lands_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    registry = ["registry", "--repository", str(repo), "--actor", "ci"]
    for k in (1, 2):
        result = CliRunner().invoke(
            main, [*registry, "register", str(_artifact(tmp_path / "build", k)), "--name", "adder"]
        )
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, [*registry, "promote", "adder", "1", "--to", "production"])
    assert result.exit_code == 0, result.output
    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    with testing.run(repo, registry=True, watch_interval=0.2) as srv, httpx.Client(base_url=srv.http_url) as client:

        def traffic() -> None:
            while not stop.is_set():
                reply = client.post("/v2/models/adder/infer", json=BODY, timeout=10)
                outcomes[str(reply.status_code) + ":" + str(reply.json().get("model_version"))] += 1

        sender = threading.Thread(target=traffic)
        sender.start()
        time.sleep(0.5)
        promoted = CliRunner().invoke(main, [*registry, "promote", "adder", "2", "--to", "production"])
        assert promoted.exit_code == 0, promoted.output
        locker = sqlite3.connect(default_url(repo).removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        try:
            # another writer holds the database while the server switches to version 2: its audit
            # writes (load, unload) wait for the lock, then give up; requests must not notice
            locker.execute("BEGIN EXCLUSIVE")
            time.sleep(6.5)  # past the server's busy timeout (5 s)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and outcomes["200:2"] < 5:
            time.sleep(0.1)
        stop.set()
        sender.join()
    assert set(outcomes) <= {"200:1", "200:2"}, outcomes  # every request answered by a serving version
    assert outcomes["200:1"] > 10 and outcomes["200:2"] >= 5, outcomes
    assert "could not record" in caplog.text  # the lock did make the server's audit write fail
