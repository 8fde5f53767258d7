"""``processes: N``: a model-as-code runs in N worker processes; one that dies fails only the request
it was running (503, at once), is replaced, and the model keeps answering."""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from pathlib import Path

import httpx

from modelserve import testing

# answers with its PID; an input of -1 kills the process running it; slow enough to overlap
FRAGILE = """\
import os
import time
import numpy as np

class Model:
    thread_safe = True
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "pid", "datatype": "INT64", "shape": [-1]}],
    }

    def load(self, path):
        pass

    def predict(self, inputs):
        if (inputs["x"] == -1).any():
            os._exit(3)
        time.sleep(0.02)
        return {"pid": np.full(len(inputs["x"]), os.getpid(), dtype=np.int64)}
"""


def _body(value: float) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [value]}]}


def _repo(root: Path) -> Path:
    (root / "fragile" / "1").mkdir(parents=True)
    (root / "fragile" / "1" / "model.py").write_text(textwrap.dedent(FRAGILE))
    (root / "fragile" / "config.yaml").write_text("processes: 2\nbatching: off\nwarmup: off\n")
    return root


async def _pids(url: str, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        replies = await asyncio.gather(*(client.post("/v2/models/fragile/infer", json=_body(1)) for _ in range(n)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies if r.status_code != 200]
    return [int(r.json()["outputs"][0]["data"][0]) for r in replies]


def test_requests_run_in_worker_processes_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    with testing.run(_repo(tmp_path), trust_code=True, inference_threads=2) as srv:
        workers = set(asyncio.run(_pids(srv.http_url, 20)))
        assert len(workers) == 2 and os.getpid() not in workers  # two processes, neither the server

        with httpx.Client(base_url=srv.http_url, timeout=30) as client:
            started = time.monotonic()
            crash = client.post("/v2/models/fragile/infer", json=_body(-1))
            assert crash.status_code == 503 and "died" in crash.json()["error"] and "retry" in crash.json()["error"]
            assert time.monotonic() - started < 5  # failed fast, no hang
            asyncio.run(_pids(srv.http_url, 10))  # everything after the crash is answered

            deadline = time.monotonic() + 60
            current: set[int] = set()
            while time.monotonic() < deadline and len(current) < 2:
                current = set(asyncio.run(_pids(srv.http_url, 20)))
            assert len(current) == 2 and len(current - workers) == 1  # the dead one was replaced
        version = srv.server.manager.model("fragile").versions[1]
        assert version.runtime is not None and version.runtime.restarts == 1  # type: ignore[attr-defined]


def test_a_model_that_cannot_load_in_a_worker_fails_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.py").write_text("raise ImportError('no such thing')\n")
    (tmp_path / "broken" / "config.yaml").write_text("processes: 2\n")
    with testing.run(tmp_path, trust_code=True) as srv:
        (row,) = httpx.post(f"{srv.http_url}/v2/repository/index", json={}).json()
        assert row["state"] == "FAILED" and "no such thing" in row["reason"]
