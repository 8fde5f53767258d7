"""Request limits on a real server: tensor elements (REST JSON, binary REST, gRPC), JSON nesting,
headers and gRPC metadata. Each is refused with its status and a message naming the limit, and the
server answers the next request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest

from modelserve import testing
from modelserve.protocol.v2.grpc import messages as pb
from tests.conftest import IRIS_REQUEST

INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def srv(repo: Path) -> Iterator[testing.run]:
    with testing.run(repo, max_tensor_elements=8, max_json_depth=6, max_headers=20, max_header_bytes=2048) as server:
        yield server


def _rows(n: int) -> dict:
    return {"inputs": [{"name": "input", "shape": [n, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2] * n}]}


def _serves(srv: testing.run) -> None:
    reply = httpx.post(srv.http_url + "/v2/models/iris/infer", json=IRIS_REQUEST, timeout=10)
    assert reply.status_code == 200 and reply.json()["outputs"][0]["data"] == [0]


def test_too_many_elements_is_413_on_rest_json_and_binary(srv: testing.run) -> None:
    assert httpx.post(srv.http_url + "/v2/models/iris/infer", json=_rows(2), timeout=10).status_code == 200
    reply = httpx.post(srv.http_url + "/v2/models/iris/infer", json=_rows(3), timeout=10)
    assert reply.status_code == 413 and "past 8 tensor elements" in reply.json()["error"]
    # binary BYTES: a huge declared shape in a tiny body is refused before anything is decoded
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [50_000_000], "datatype": "BYTES", "parameters": {"binary_data_size": 4}}
            ]
        }
    )
    reply = httpx.post(
        srv.http_url + "/v2/models/iris/infer",
        content=header + b"\0\0\0\0",
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=10,
    )
    assert reply.status_code == 413 and "[50000000]" in reply.json()["error"]
    _serves(srv)


def test_too_many_elements_is_resource_exhausted_on_grpc(srv: testing.run) -> None:
    message = pb.ModelInferRequest(model_name="iris")
    tensor = message.inputs.add(name="input", datatype="FP32", shape=[3, 4])
    message.raw_input_contents.append(np.ones((3, 4), dtype="<f4").tobytes())
    with grpc.insecure_channel(srv.grpc_target) as channel, pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(INFER)(message.SerializeToString(), timeout=10)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "past 8 tensor elements" in (err.value.details() or "")
    assert tensor.shape == [3, 4]
    _serves(srv)


def test_json_nested_past_the_limit_is_400(srv: testing.run) -> None:
    body = {**IRIS_REQUEST, "parameters": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}
    reply = httpx.post(srv.http_url + "/v2/models/iris/infer", json=body, timeout=10)
    assert reply.status_code == 400 and "nested more than 6 levels" in reply.json()["error"]
    _serves(srv)


def test_headers_over_the_limits_are_431(srv: testing.run) -> None:
    many = {f"x-h{i}": "1" for i in range(30)}
    reply = httpx.post(srv.http_url + "/v2/models/iris/infer", json=IRIS_REQUEST, headers=many, timeout=10)
    assert reply.status_code == 431 and "the limit is 20" in reply.json()["error"]
    big = {"x-big": "v" * 3000}
    reply = httpx.get(srv.http_url + "/v2/models/iris", headers=big, timeout=10)
    assert reply.status_code == 431 and "the limit is 2048" in reply.json()["error"]
    _serves(srv)


def test_grpc_metadata_over_the_limit_is_refused(srv: testing.run) -> None:
    live = "/inference.GRPCInferenceService/ServerLive"
    with grpc.insecure_channel(srv.grpc_target) as channel, pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(live)(b"", timeout=10, metadata=[("x-big", "v" * 8000)])
    assert err.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL)
    _serves(srv)
