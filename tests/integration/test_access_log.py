"""The access log: one structured record per inference request, over REST, TF Serving REST and
gRPC, with the client's request id echoed; nothing when it is off."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from modelserve import testing
from modelserve.telemetry.logs import FIELDS
from tests.fixtures.models import _save_onnx, adder_model

GOOD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]}
BAD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


def _records(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [getattr(r, FIELDS) for r in caplog.records if r.name == "modelserve.access"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _save_onnx(tmp_path / "adder" / "1" / "model.onnx", adder_model(1.0))
    return tmp_path


def test_one_record_per_request(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="modelserve.access")
    with testing.run(repo, access_log=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        good = client.post("/v2/models/adder/infer", json=GOOD, headers={"X-Request-ID": "req-42"})
        assert good.headers["x-request-id"] == "req-42"
        generated = client.post("/v1/models/adder:predict", json={"instances": [[1, 2, 3]]})
        assert len(generated.headers["x-request-id"]) == 16
        refused = client.post("/v2/models/adder/infer", json=BAD, headers={"X-Request-ID": "bad-1"})
        assert refused.status_code == 400 and refused.headers["x-request-id"] == "bad-1"  # errors carry it too
        assert client.post("/v2/models/nope/infer", json=GOOD).status_code == 404
        grpc = grpcclient.InferenceServerClient(srv.grpc_target)
        tensor = grpcclient.InferInput("x", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
        grpc.infer("adder", [tensor], headers={"x-request-id": "from-grpc"})
        grpc.close()
    records = _records(caplog)
    assert [(r["protocol"], r["status"]) for r in records] == [
        ("rest", 200), ("tfserving", 200), ("rest", 400), ("rest", 404), ("grpc", "OK"),
    ]  # fmt: skip
    first = records[0]
    assert first["request_id"] == "req-42" and first["model"] == "adder" and first["version"] == "1"
    assert first["batch_rows"] == 2 and isinstance(first["latency_ms"], float) and first["latency_ms"] > 0
    assert records[1]["request_id"] == generated.headers["x-request-id"]
    assert records[2]["version"] == "1"  # pinned, then refused by validation
    assert records[3]["model"] == "nope" and records[3]["version"] == ""
    assert records[4]["request_id"] == "from-grpc"


def test_off_by_default(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="modelserve.access")
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        response = client.post("/v2/models/adder/infer", json=GOOD)
        assert "x-request-id" not in response.headers
    assert _records(caplog) == []
