"""Warmup: a version answers its sample requests (``warmup/*.json``) and generated ones before it
is READY; a version whose warmup fails is never served, and says why."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from modelserve import testing
from tests.fixtures.models import _save_onnx, adder_model

# Counts its predict calls: the first client request learns how many warmup requests ran before it.
COUNTER = """\
import time
import numpy as np

class Model:
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "calls", "datatype": "INT64", "shape": [-1]}],
    }

    def load(self, path):
        self.calls = 0
        self.delay = float((path / "delay.txt").read_text()) if (path / "delay.txt").exists() else 0.0

    def predict(self, inputs):
        self.calls += 1
        time.sleep(self.delay)
        return {"calls": np.full(len(inputs["x"]), self.calls, dtype=np.int64)}
"""
SAMPLE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
BODY = SAMPLE


def _counter(repo: Path, version: int, samples: int, delay: float = 0.0, config: str = "") -> Path:
    version_dir = repo / "counter" / str(version)
    (version_dir / "warmup").mkdir(parents=True)
    (version_dir / "model.py").write_text(textwrap.dedent(COUNTER))
    if delay:
        (version_dir / "delay.txt").write_text(str(delay))
    for i in range(samples):
        (version_dir / "warmup" / f"{i:03}.json").write_bytes(orjson.dumps(SAMPLE))
    if config:
        (repo / "counter" / "config.yaml").write_text(config)
    return version_dir


def _calls(client: httpx.Client) -> int:
    response = client.post("/v2/models/counter/infer", json=BODY)
    assert response.status_code == 200, response.text
    return int(response.json()["outputs"][0]["data"][0])


def test_samples_and_generated_requests_run_before_the_first_client(tmp_path: Path) -> None:
    _counter(tmp_path, 1, samples=2, config="warmup: {generate: 3}\n")
    with testing.run(tmp_path, trust_code=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        assert _calls(client) == 2 + 3 + 1


def test_warmup_off_skips_the_samples(tmp_path: Path) -> None:
    _counter(tmp_path, 1, samples=2, config="warmup: off\n")
    with testing.run(tmp_path, trust_code=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        assert _calls(client) == 1


@pytest.mark.parametrize(
    ("sample", "words"),
    [
        (b"{not json", ["warmup/000.json is not a valid v2 inference request"]),
        (
            orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}),
            ["warmup/000.json failed", "'adder' version 1", "shape"],
        ),
    ],
)
def test_a_failing_sample_fails_the_version_with_its_reason(tmp_path: Path, sample: bytes, words: list[str]) -> None:
    _save_onnx(tmp_path / "adder" / "1" / "model.onnx", adder_model(1.0))
    (tmp_path / "adder" / "1" / "warmup").mkdir()
    (tmp_path / "adder" / "1" / "warmup" / "000.json").write_bytes(sample)
    with testing.run(tmp_path) as srv, httpx.Client(base_url=srv.http_url) as client:
        (row,) = client.post("/v2/repository/index", json={}).json()
        assert row["state"] == "FAILED"
        for word in words:
            assert word in row["reason"]
        response = client.post("/v2/models/adder/infer", json=BODY)
        assert response.status_code == 503 and "warmup/000.json" in response.json()["error"]


def test_a_version_is_not_ready_while_it_warms_up(tmp_path: Path) -> None:
    """Readiness tells the truth: a new version loading beside a serving one is not ready until its
    (slow) warmup is done, and requests keep going to the serving version meanwhile."""
    _counter(tmp_path, 1, samples=0, config="version_policy: all\n")
    with testing.run(tmp_path, trust_code=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        _counter(tmp_path, 2, samples=1, delay=0.5)
        loading = threading.Thread(target=srv.call, args=(srv.server.manager.load_model("counter"),))
        loading.start()
        seen_not_ready = False
        while loading.is_alive():
            ready = client.get("/v2/models/counter/versions/2/ready").status_code == 200
            if not ready:
                seen_not_ready = True
                assert client.post("/v2/models/counter/infer", json=BODY).json()["model_version"] == "1"
            time.sleep(0.05)
        loading.join()
        assert seen_not_ready
        assert client.get("/v2/models/counter/versions/2/ready").status_code == 200
        assert client.post("/v2/models/counter/infer", json=BODY).json()["model_version"] == "2"
