"""``serve --workers N``: several processes share the ports; one that dies is replaced; SIGTERM
stops them all. Run as a user runs it: the ``modelserve`` command in a subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

# answers with the PID of the process that ran it
WHO = """\
import os
import numpy as np

class Model:
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "pid", "datatype": "INT64", "shape": [-1]}],
    }

    def load(self, path):
        pass

    def predict(self, inputs):
        return {"pid": np.full(len(inputs["x"]), os.getpid(), dtype=np.int64)}
"""
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}
PORTS = re.compile(r"supervising 2 workers on HTTP port (\d+) and gRPC port (\d+)")


class Supervised:
    def __init__(self, repo: Path) -> None:
        command = [sys.executable, "-m", "modelserve.cli", "serve", str(repo), "--trust-code", "--workers", "2"]
        command += ["--http-port", "0", "--grpc-port", "0", "--watch-interval", "0"]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.log: list[str] = []
        self._ports = threading.Event()
        self.http = self.grpc = ""
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()
        assert self._ports.wait(30), "\n".join(self.log)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip())
            if match := PORTS.search(line):
                self.http, self.grpc = f"http://127.0.0.1:{match[1]}", f"127.0.0.1:{match[2]}"
                self._ports.set()

    def who(self) -> int:
        """The PID that answers a request on a new connection (the kernel picks the process)."""
        with httpx.Client(base_url=self.http, timeout=10) as client:
            response = client.post("/v2/models/who/infer", json=BODY)
        assert response.status_code == 200, response.text
        return int(response.json()["outputs"][0]["data"][0])

    def pids(self, requests: int = 60) -> set[int]:
        return {self.who() for _ in range(requests)}


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    (tmp_path / "who" / "1").mkdir(parents=True)
    (tmp_path / "who" / "1" / "model.py").write_text(textwrap.dedent(WHO))
    server = Supervised(tmp_path)
    try:
        _eventually(lambda: len(server.pids(10)) == 2)
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()  # the workers go with it (PR_SET_PDEATHSIG)
            server.process.wait()
        server.drain.join(timeout=10)
        assert server.process.stderr is not None
        server.process.stderr.close()


def _eventually(condition: object, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_workers_share_the_ports_and_a_dead_one_is_replaced(supervised: Supervised) -> None:
    first = supervised.pids()
    assert len(first) == 2 and supervised.process.pid not in first  # the supervisor serves nothing

    client = grpcclient.InferenceServerClient(supervised.grpc)
    tensor = grpcclient.InferInput("x", [1], "FP32")
    tensor.set_data_from_numpy(np.ones(1, dtype=np.float32))
    assert int(client.infer("who", [tensor]).as_numpy("pid")[0]) in first
    client.close()

    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    _eventually(lambda: len(supervised.pids(20) - {victim}) == 2)  # a new worker took its place
    after = supervised.pids()
    assert victim not in after and len(after) == 2
    assert any("exited with -9; restarting" in line for line in supervised.log)


def _served(supervised: Supervised) -> float:
    """modelserve_requests_total of ``who`` (successes) as one worker's /metrics reports it."""
    with httpx.Client(base_url=supervised.http, timeout=10) as client:  # a new connection: any worker
        text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "modelserve_requests_total" and sample.labels.get("outcome") == "success":
                return float(sample.value)
    return 0.0


def test_metrics_add_up_every_worker(supervised: Supervised) -> None:
    time.sleep(1.5)  # every worker has published its figures (once a second)
    before = {_served(supervised) for _ in range(6)}
    assert len(before) == 1, f"workers disagree: {before}"
    served = supervised.pids(40)
    assert len(served) == 2  # both workers answered some
    time.sleep(1.5)
    after = {_served(supervised) for _ in range(6)}
    assert after == {before.pop() + 40}


def test_workers_die_with_a_killed_supervisor(supervised: Supervised) -> None:
    workers = supervised.pids()
    supervised.process.kill()
    supervised.process.wait()
    _eventually(lambda: not any(_alive(pid) for pid in workers), within=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_every_worker(supervised: Supervised) -> None:
    workers = supervised.pids()
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.process.wait(timeout=60) == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
