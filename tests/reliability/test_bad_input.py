"""Every malformed request gets a 4xx naming the problem, and the server keeps serving."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.conftest import IRIS_REQUEST


def _iris(**overrides: object) -> bytes:
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
    tensor.update(overrides)
    return orjson.dumps({"inputs": [tensor]})


DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_DATA = (
    b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":' + b"[" * 200 + b"1" + b"]" * 200 + b"}]}"
)

# (id, method, path, body, status, words the error must contain)
CASES = [
    ("malformed-json", "POST", "/v2/models/iris/infer", b'{"inputs": [', 400, ["not valid JSON"]),
    ("empty-body", "POST", "/v2/models/iris/infer", b"", 400, ["empty"]),
    ("not-an-object", "POST", "/v2/models/iris/infer", b"[1, 2]", 400, ["JSON object"]),
    ("inputs-not-list", "POST", "/v2/models/iris/infer", b'{"inputs": {"name": "input"}}', 400, ["'inputs'"]),
    ("input-not-object", "POST", "/v2/models/iris/infer", b'{"inputs": [7]}', 400, ["inputs[0]"]),
    (
        "missing-data",
        "POST",
        "/v2/models/iris/infer",
        b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32"}]}',
        400,
        ["'data'"],
    ),
    ("unknown-datatype", "POST", "/v2/models/iris/infer", _iris(datatype="FLOAT7"), 400, ["'input'", "FLOAT7"]),
    (
        "datatype-mismatch",
        "POST",
        "/v2/models/iris/infer",
        _iris(datatype="INT32", data=[5, 3, 1, 0]),
        400,
        ["INT32", "FP32"],
    ),
    ("shape-mismatch", "POST", "/v2/models/iris/infer", _iris(shape=[2, 2]), 400, ["[2, 2]", "[-1, 4]"]),
    ("rank-mismatch", "POST", "/v2/models/iris/infer", _iris(shape=[4]), 400, ["[4]", "[-1, 4]"]),
    ("count-mismatch", "POST", "/v2/models/iris/infer", _iris(data=[1.0, 2.0, 3.0]), 400, ["3 elements", "needs 4"]),
    ("ragged", "POST", "/v2/models/iris/infer", _iris(shape=[2, 4], data=[[1, 2, 3, 4], [1, 2]]), 400, ["ragged"]),
    (
        "nested-shape-differs",
        "POST",
        "/v2/models/iris/infer",
        _iris(shape=[1, 4], data=[[1, 2], [3, 4]]),
        400,
        ["[2, 2]", "[1, 4]"],
    ),
    ("negative-dim", "POST", "/v2/models/iris/infer", _iris(shape=[-1, 4]), 400, ["non-negative"]),
    (
        "overflowing-dims",
        "POST",
        "/v2/models/iris/infer",
        _iris(shape=[16, 2**60 + 2]),
        413,
        ["[16, 1152921504606846978]", "max_tensor_elements"],
    ),
    ("string-element", "POST", "/v2/models/iris/infer", _iris(data=[1, 2, "three", 4]), 400, ["strings"]),
    ("null-element", "POST", "/v2/models/iris/infer", _iris(data=[1, 2, None, 4]), 400, ["'input'"]),
    ("fp32-overflow", "POST", "/v2/models/iris/infer", _iris(data=[1, 2, 3, 1e300]), 400, ["out of range", "FP32"]),
    ("deep-json", "POST", "/v2/models/iris/infer", DEEP, 400, ["nested more than 32 levels"]),
    ("deep-data", "POST", "/v2/models/iris/infer", DEEP_DATA, 400, ["nested more than 32 levels"]),
    ("unknown-input", "POST", "/v2/models/iris/infer", _iris(name="features"), 400, ["'features'", "['input']"]),
    (
        "unknown-output",
        "POST",
        "/v2/models/iris/infer",
        orjson.dumps({**IRIS_REQUEST, "outputs": [{"name": "nope"}]}),
        400,
        ["'nope'"],
    ),
    ("id-not-string", "POST", "/v2/models/iris/infer", orjson.dumps({**IRIS_REQUEST, "id": 5}), 400, ["'id'"]),
    ("unknown-model", "POST", "/v2/models/nope/infer", _iris(), 404, ["'nope'"]),
    ("unknown-version", "POST", "/v2/models/iris/versions/9/infer", _iris(), 404, ["version 9"]),
    ("bad-version", "POST", "/v2/models/iris/versions/latest/infer", _iris(), 400, ["'latest'"]),
    ("failed-model", "POST", "/v2/models/broken/infer", _iris(), 503, ["FAILED", "model.onnx"]),
    ("model-without-versions", "GET", "/v2/models/empty", b"", 503, ["no version"]),
    ("tf-malformed", "POST", "/v1/models/iris:predict", b"{", 400, ["not valid JSON"]),
    ("tf-no-instances", "POST", "/v1/models/iris:predict", b'{"foo": 1}', 400, ["instances"]),
    ("tf-wrong-width", "POST", "/v1/models/iris:predict", b'{"instances": [[1, 2, 3]]}', 400, ["[1, 3]", "[-1, 4]"]),
    ("tf-ragged", "POST", "/v1/models/iris:predict", b'{"instances": [[1, 2, 3, 4], [1]]}', 400, ["ragged"]),
    ("tf-strings", "POST", "/v1/models/iris:predict", b'{"instances": [["a", "b", "c", "d"]]}', 400, ["strings"]),
    (
        "tf-signature",
        "POST",
        "/v1/models/iris:predict",
        b'{"signature_name": "x", "instances": [[1,2,3,4]]}',
        400,
        ["'x'"],
    ),
    ("tf-unknown-model", "POST", "/v1/models/nope:predict", b'{"instances": [[1,2,3,4]]}', 404, ["'nope'"]),
    ("tf-classify", "POST", "/v1/models/iris:classify", b"{}", 501, ["classify"]),
    (
        "runtime-error",
        "POST",
        "/v2/models/reshaper/infer",
        b'{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,3]}]}',
        500,
        ["internal error", "request id"],
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_request_is_answered_and_server_keeps_serving(
    client: httpx.Client, method: str, path: str, body: bytes, status: int, words: list[str]
) -> None:
    response = client.request(method, path, content=body or None)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for word in words:
        assert word in error
    assert client.get("/v2/health/live").status_code == 200
    good = client.post("/v2/models/iris/infer", json=IRIS_REQUEST)
    assert good.status_code == 200
    assert good.json()["outputs"][0]["data"] == [0]


@pytest.mark.parametrize("value", ["\u00b2", "0" * 4999 + "1"], ids=["superscript", "5000-digits"])
def test_bad_binary_header_length_is_400(client: httpx.Client, value: str) -> None:
    response = client.post(
        "/v2/models/iris/infer",
        content=orjson.dumps(IRIS_REQUEST),
        headers={"Inference-Header-Content-Length": value.encode("utf-8")},
    )
    assert response.status_code == 400 and "Inference-Header-Content-Length" in response.json()["error"]


def test_runtime_error_logs_traceback_with_request_id(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    body = {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}
    response = client.post("/v2/models/reshaper/infer", json=body)
    error = response.json()["error"]
    request_id = error.rsplit(" ", 1)[-1].rstrip(")")
    assert "Reshape" not in error  # the runtime's details stay in the log
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_body_over_the_limit_is_413(repo) -> None:
    from modelserve import testing

    with testing.run(repo, max_request_bytes=1024) as srv, httpx.Client(base_url=srv.http_url) as c:
        big = {
            "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
            "id": "x" * 2000,
        }
        response = c.post("/v2/models/iris/infer", json=big)
        assert response.status_code == 413 and "1024 bytes" in response.json()["error"]
        assert c.post("/v2/models/iris/infer", json=IRIS_REQUEST).status_code == 200
