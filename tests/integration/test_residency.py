"""Many models, bounded memory: lazy loading, idle unloading and a memory budget, as clients see them.

Models here are model.py classes that hold a known amount of memory and count their loads in a
file, so that "loaded once", "unloaded" and "loaded again" are observable from outside.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from modelserve import testing

HOLDER = """\
import time
import numpy as np

class Model:
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }

    def load(self, path):
        settings = (path / "settings.txt").read_text().split()
        self.ballast = np.ones(int(settings[0]) << 20, dtype=np.uint8)  # MiB really held
        time.sleep(float(settings[1]))
        with open(path / "loads.log", "a") as log:
            log.write("load\\n")

    def predict(self, inputs):
        return {"y": inputs["x"] + 1}
"""
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}


def _model(root: Path, name: str, mib: int = 1, load_s: float = 0.0) -> Path:
    version = root / name / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(HOLDER))
    (version / "settings.txt").write_text(f"{mib} {load_s}")
    (root / name / "config.yaml").write_text("warmup: off\n")
    return version


def _loads(version: Path) -> int:
    log = version / "loads.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def _state(client: httpx.Client, name: str) -> tuple[str, str]:
    (row,) = [r for r in client.post("/v2/repository/index", json={}).json() if r["name"] == name]
    return row["state"], row.get("reason", "")


def _infer(client: httpx.Client, name: str) -> httpx.Response:
    return client.post(f"/v2/models/{name}/infer", json=BODY)


def _eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_lazy_models_load_once_on_their_first_requests(tmp_path: Path) -> None:
    version = _model(tmp_path, "lazy", load_s=0.3)
    with testing.run(tmp_path, trust_code=True, lazy_load=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        assert _loads(version) == 0
        state, reason = _state(client, "lazy")
        assert state == "UNLOADED" and "loads on its next request" in reason
        assert client.get("/v2/health/ready").status_code == 200  # the server is ready; the model sleeps

        async def first_requests() -> list[int]:
            async with httpx.AsyncClient(base_url=srv.http_url, timeout=30) as aclient:
                replies = await asyncio.gather(*(aclient.post("/v2/models/lazy/infer", json=BODY) for _ in range(8)))
            return [r.status_code for r in replies]

        assert asyncio.run(first_requests()) == [200] * 8
        assert _loads(version) == 1  # eight requests, one load
        assert _state(client, "lazy")[0] == "READY"
        assert client.get("/v2/models/lazy").status_code == 200


def test_idle_models_are_unloaded_and_come_back(tmp_path: Path) -> None:
    version = _model(tmp_path, "idler")
    with (
        testing.run(tmp_path, trust_code=True, idle_unload_s=0.4) as srv,
        httpx.Client(base_url=srv.http_url) as client,
    ):
        assert _infer(client, "idler").status_code == 200
        _eventually(lambda: _state(client, "idler")[0] == "UNLOADED")
        assert "idle for 0.4 s" in _state(client, "idler")[1]
        assert _infer(client, "idler").json()["outputs"][0]["data"] == [2]
        assert _loads(version) == 2


def test_a_memory_budget_evicts_the_least_recently_used(tmp_path: Path) -> None:
    versions = {name: _model(tmp_path, name, mib=60) for name in ("a", "b", "c")}
    with (
        testing.run(tmp_path, trust_code=True, lazy_load=True, memory_budget_mb=150) as srv,
        httpx.Client(base_url=srv.http_url) as client,
    ):
        for name in ("a", "b", "c"):  # 3 x 60 MiB do not fit in 150: a, the oldest, makes way
            assert _infer(client, name).status_code == 200
        assert [_state(client, n)[0] for n in "abc"] == ["UNLOADED", "READY", "READY"]
        assert "memory budget" in _state(client, "a")[1]
        assert _infer(client, "b").status_code == 200  # b is now more recent than c
        assert _infer(client, "a").status_code == 200  # a comes back; c makes way
        assert [_state(client, n)[0] for n in "abc"] == ["READY", "READY", "UNLOADED"]
        assert [_loads(versions[n]) for n in "abc"] == [2, 1, 1]


def test_a_request_waits_for_a_load_only_so_long(tmp_path: Path) -> None:
    _model(tmp_path, "slow", load_s=1.5)
    with (
        testing.run(tmp_path, trust_code=True, lazy_load=True, load_wait_s=0.3) as srv,
        httpx.Client(base_url=srv.http_url, timeout=30) as client,
    ):
        response = _infer(client, "slow")
        assert response.status_code == 503 and "not ready within 0.3 s" in response.json()["error"]
        _eventually(lambda: _state(client, "slow")[0] == "READY")  # the load went on without the caller
        assert _infer(client, "slow").status_code == 200
