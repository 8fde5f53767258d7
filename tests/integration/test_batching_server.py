"""Batching through the server: concurrent REST and gRPC clients of a slow model are merged into
few runtime calls, and each gets exactly its own rows back."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio

from modelserve import testing

# 5 ms per call whatever the batch: merging is what makes it fast
SLOW_DOUBLER = """\
import time
import numpy as np

class Model:
    thread_safe = True
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }

    def load(self, path):
        pass

    def predict(self, inputs):
        time.sleep(0.005)
        return {"y": inputs["x"] * 2}
"""


def _repo(root: Path, config: str = "") -> Path:
    (root / "doubler" / "1").mkdir(parents=True)
    (root / "doubler" / "1" / "model.py").write_text(textwrap.dedent(SLOW_DOUBLER))
    if config:
        (root / "doubler" / "config.yaml").write_text(config)
    return root


def _rows(i: int) -> np.ndarray:
    n = 1 + i % 5
    return np.arange(2 * n, dtype=np.float32).reshape(n, 2) + 1000 * i


async def _rest(url: str, i: int) -> None:
    x = _rows(i)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/v2/models/doubler/infer", json=body)
    assert response.status_code == 200, response.text
    out = response.json()["outputs"][0]
    assert out["shape"] == list(x.shape) and out["data"] == (x * 2).ravel().tolist()


async def _grpc(target: str, i: int) -> None:
    x = _rows(i)
    tensor = grpcaio.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    async with grpcaio.InferenceServerClient(target) as client:
        result = await client.infer("doubler", [tensor])
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)


def test_concurrent_clients_are_merged_and_get_their_own_rows(tmp_path: Path) -> None:
    with testing.run(_repo(tmp_path), trust_code=True, inference_threads=2) as srv:

        async def burst() -> None:
            calls = [_rest(srv.http_url, i) if i % 2 else _grpc(srv.grpc_target, i) for i in range(96)]
            await asyncio.gather(*calls)

        asyncio.run(burst())
        batcher = srv.server.manager.model("doubler").versions[1].batcher
        assert batcher is not None
        stats = batcher.stats
        assert stats.requests == 96 and stats.rows == sum(1 + i % 5 for i in range(96))
        assert stats.batches < 96 / 2, f"{stats.batches} runtime calls for 96 requests"


@pytest.mark.parametrize("config", ["batching: off\n", ""])
def test_batching_off_or_no_batch_dimension_runs_each_request_alone(tmp_path: Path, config: str) -> None:
    _repo(tmp_path, config)
    if not config:  # a fixed first dimension: nothing to merge along
        source = (tmp_path / "doubler" / "1" / "model.py").read_text().replace("[-1, 2]", "[1, 2]")
        (tmp_path / "doubler" / "1" / "model.py").write_text(source)
    with testing.run(tmp_path, trust_code=True) as srv:
        assert srv.server.manager.model("doubler").versions[1].batcher is None
        x = np.array([[1, 2]], dtype=np.float32)
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
        response = httpx.post(f"{srv.http_url}/v2/models/doubler/infer", json=body)
        assert response.json()["outputs"][0]["data"] == (x * 2).ravel().tolist()
