"""The binary tensor extension over REST, with the official tritonclient and by hand."""

from __future__ import annotations

import struct

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelserve import testing
from tests.conftest import IRIS_ROW
from tests.fixtures.models import identity_batch


@pytest.fixture
def triton_client(server: testing.run) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.http_url.removeprefix("http://"))


def test_tritonclient_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("iris")
    assert not triton_client.is_model_ready("broken")
    meta = triton_client.get_model_metadata("iris")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer_defaults(triton_client: triton.InferenceServerClient, binary: bool) -> None:
    x = np.array([IRIS_ROW, [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
    result = triton_client.infer("iris", [tensor], outputs=outputs, request_id="r1")
    np.testing.assert_array_equal(result.as_numpy("label"), [0, 2])
    assert result.as_numpy("probabilities").shape == (2, 3)
    assert result.get_response()["id"] == "r1"


def test_tritonclient_every_datatype_binary(triton_client: triton.InferenceServerClient) -> None:
    arrays = identity_batch()
    inputs = []
    for dt, array in arrays.items():
        tensor = triton.InferInput(f"in_{dt}", list(array.shape), dt)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = triton_client.infer("identity", inputs)
    for dt, array in arrays.items():
        np.testing.assert_array_equal(result.as_numpy(f"out_{dt}"), array, err_msg=dt)


def test_tritonclient_sees_server_errors(triton_client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException, match=r"got shape \[1, 3\], expected \[-1, 4\]"):
        triton_client.infer("iris", [tensor])


def _binary_body(header: dict, blob: bytes) -> tuple[bytes, dict[str, str]]:
    import orjson

    head = orjson.dumps(header)
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


def _identity_with_bytes(client: httpx.Client, values: list[bytes]) -> httpx.Response:
    arrays = identity_batch(rows=1)
    blob = b"".join(struct.pack("<I", len(v)) + v for v in values)
    inputs = [
        {"name": f"in_{dt}", "datatype": dt, "shape": [1, 2], "data": a.tolist()}
        for dt, a in arrays.items()
        if dt != "BYTES"
    ]
    inputs.append(
        {"name": "in_BYTES", "datatype": "BYTES", "shape": [1, 2], "parameters": {"binary_data_size": len(blob)}}
    )
    header = {"inputs": inputs, "outputs": [{"name": "out_BYTES", "parameters": {"binary_data": True}}]}
    body, headers = _binary_body(header, blob)
    return client.post("/v2/models/identity/infer", content=body, headers=headers)


def test_binary_bytes_with_nul_survive(client: httpx.Client) -> None:
    values = [b"a\x00", "\x00é".encode()]
    response = _identity_with_bytes(client, values)
    assert response.status_code == 200, response.text
    json_size = int(response.headers["inference-header-content-length"])
    assert response.content[json_size:] == b"".join(struct.pack("<I", len(v)) + v for v in values)


def test_onnx_string_input_that_is_not_utf8_is_400(client: httpx.Client) -> None:
    response = _identity_with_bytes(client, [b"ok", b"\xff\x00"])
    assert response.status_code == 400
    assert "'in_BYTES'" in response.json()["error"] and "UTF-8" in response.json()["error"]


@pytest.mark.parametrize(
    ("size", "extra", "message"),
    [
        (12, b"", "needs 16"),
        (20, b"", "runs past the end"),
        (16, b"xx", "2 bytes of binary data"),
        (-1, b"", "binary_data_size must be a non-negative integer"),
    ],
)
def test_binary_size_mismatches_are_400(client: httpx.Client, size: int, extra: bytes, message: str) -> None:
    blob = np.array([IRIS_ROW], dtype=np.float32).tobytes() + extra
    header = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": size}}]
    }
    body, headers = _binary_body(header, blob)
    response = client.post("/v2/models/iris/infer", content=body, headers=headers)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_header_length_beyond_body_is_400(client: httpx.Client) -> None:
    response = client.post("/v2/models/iris/infer", content=b"{}", headers={"Inference-Header-Content-Length": "99"})
    assert response.status_code == 400 and "Inference-Header-Content-Length" in response.json()["error"]
