"""Bad input over REST with the binary tensor extension: a 4xx naming the problem, and the server keeps serving.

The binary-extension counterpart of test_bad_input.py: a JSON header of
``Inference-Header-Content-Length`` bytes, then raw tensors sized by each input's
``parameters.binary_data_size``. Besides the JSON table's cases, every lie a client can tell in
that framing: header lengths that are not a plain decimal within the body, sizes that do not add
up, sizes that are not whole elements, and BYTES length prefixes that run past their tensor.
"""

from __future__ import annotations

import struct
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.conftest import IRIS_ROW

HEADER = "Inference-Header-Content-Length"
IRIS_BLOB = np.array([IRIS_ROW], dtype=np.float32).tobytes()  # 16 bytes


def _iris(size: object = 16, **overrides: object) -> dict[str, Any]:
    """A binary iris request header; ``overrides`` replace keys of its one input."""
    tensor: dict[str, Any] = {
        "name": "input",
        "datatype": "FP32",
        "shape": [1, 4],
        "parameters": {"binary_data_size": size},
    }
    tensor.update(overrides)
    return {"inputs": [tensor]}


def _framed(header: dict[str, Any] | bytes, blob: bytes = IRIS_BLOB, length: bytes | None = None) -> tuple[bytes, Any]:
    """(body, headers): the JSON header, then ``blob``; ``length`` replaces the true header length."""
    head = header if isinstance(header, bytes) else orjson.dumps(header)
    return head + blob, {HEADER: str(len(head)).encode() if length is None else length}


def _bytes_input(blob: bytes) -> tuple[bytes, Any]:
    """Identity's in_BYTES alone; decoding fails before the missing inputs are noticed."""
    tensor = {"name": "in_BYTES", "datatype": "BYTES", "shape": [1, 2], "parameters": {"binary_data_size": len(blob)}}
    return _framed({"inputs": [tensor]}, blob)


def _prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _two_inputs(fp32_size: int, int32_size: int, blob: bytes) -> tuple[bytes, Any]:
    inputs = [
        {"name": "in_FP32", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": fp32_size}},
        {"name": "in_INT32", "datatype": "INT32", "shape": [1, 2], "parameters": {"binary_data_size": int32_size}},
    ]
    return _framed({"inputs": inputs}, blob)


def _duplicate_length_headers() -> tuple[bytes, Any]:
    body, headers = _framed(_iris())
    return body, [(HEADER, headers[HEADER]), (HEADER, b"5")]


def _case(case_id: str, model: str, framed: tuple[bytes, Any], status: int, *words: str) -> Any:
    body, headers = framed
    return pytest.param(f"/v2/models/{model}/infer", body, headers, status, list(words), id=case_id)


TRUE_LENGTH = len(orjson.dumps(_iris()))
LENGTH_MESSAGE = f"{HEADER} must be an integer between 0 and the body size"
DEEP = b"[" * 100_000 + b"]" * 100_000

CASES = [
    # -- the JSON table's cases, framed as binary ---------------------------------------------------------
    _case("malformed-json", "iris", _framed(b'{"inputs": ['), 400, "not valid JSON"),
    _case("not-an-object", "iris", _framed(b"[1, 2]"), 400, "JSON object"),
    _case("inputs-not-list", "iris", _framed(b'{"inputs": {"name": "input"}}'), 400, "'inputs'"),
    _case("input-not-object", "iris", _framed(b'{"inputs": [7]}'), 400, "inputs[0]"),
    _case("deep-json", "iris", _framed(DEEP), 400, "nested more than 32 levels"),
    _case("null-datatype", "iris", _framed(_iris(datatype=None)), 400, "'input'", "unknown datatype None"),
    _case(
        "lacks-datatype",
        "iris",
        _framed({"inputs": [{"name": "input", "shape": [1, 4], "parameters": {"binary_data_size": 16}}]}),
        400,
        "'input'",
        "lacks 'datatype'",
    ),
    _case(
        "lacks-shape",
        "iris",
        _framed({"inputs": [{"name": "input", "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}),
        400,
        "'input'",
        "lacks 'shape'",
    ),
    _case("parameters-not-object", "iris", _framed(_iris(parameters=[16])), 400, "'input'", "'parameters'"),
    _case("unknown-datatype", "iris", _framed(_iris(datatype="FLOAT7")), 400, "'input'", "FLOAT7"),
    _case("datatype-mismatch", "iris", _framed(_iris(datatype="INT32")), 400, "INT32", "FP32"),
    _case("shape-mismatch", "iris", _framed(_iris(shape=[2, 2])), 400, "[2, 2]", "[-1, 4]"),
    _case("rank-mismatch", "iris", _framed(_iris(shape=[4])), 400, "[4]", "[-1, 4]"),
    _case("count-mismatch", "iris", _framed(_iris(shape=[1, 3], size=16)), 400, "16 bytes", "needs 12"),
    _case("negative-dim", "iris", _framed(_iris(shape=[-1, 4])), 400, "non-negative"),
    _case(
        "overflowing-dims",
        "iris",
        _framed(_iris(shape=[16, 2**60 + 2])),
        413,
        "[16, 1152921504606846978]",
        "max_tensor_elements",
    ),
    _case(
        "zero-elements-huge-shape",
        "iris",
        _framed(_iris(shape=[0, 2**62], size=0), b""),
        400,
        "[0, 4611686018427387904]",
        "too large",
    ),
    _case("unknown-input", "iris", _framed(_iris(name="features")), 400, "'features'", "['input']"),
    _case(
        "missing-input",
        "identity",
        _two_inputs(8, 8, b"\0" * 16),
        400,
        "needs input(s)",
        "'in_BOOL'",
    ),
    _case(
        "duplicate-input",
        "iris",
        _framed({"inputs": _iris()["inputs"] * 2}, IRIS_BLOB * 2),
        400,
        "'input'",
        "more than once",
    ),
    _case(
        "duplicate-output",
        "iris",
        _framed(_iris() | {"outputs": [{"name": "label"}, {"name": "label"}]}),
        400,
        "'label'",
        "more than once",
    ),
    _case("unknown-output", "iris", _framed(_iris() | {"outputs": [{"name": "nope"}]}), 400, "'nope'"),
    _case("id-not-string", "iris", _framed(_iris() | {"id": 5}), 400, "'id'"),
    _case("unknown-model", "nope", _framed(_iris()), 404, "'nope'"),
    _case("unknown-version", "iris/versions/9", _framed(_iris()), 404, "version 9"),
    _case("bad-version", "iris/versions/latest", _framed(_iris()), 400, "'latest'"),
    _case("bad-version-leading-zero", "iris/versions/01", _framed(_iris()), 400, "'01'"),
    _case("failed-model", "broken", _framed(_iris()), 503, "FAILED", "model.onnx"),
    _case("failed-model-pickled", "pickled", _framed(_iris()), 503, "FAILED", "trusted"),
    _case("model-without-versions", "empty", _framed(_iris()), 503, "no version"),
    _case(
        "runtime-error",
        "reshaper",
        _framed(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "parameters": {"binary_data_size": 12}}]},
            b"\0" * 12,
        ),
        500,
        "internal error",
        "request id",
    ),
    _case(
        "binary-and-json-data",  # the data disagrees with the binary tensor: one of them is silently dropped
        "iris",
        _framed(_iris(data=[1.0, 2.0, 3.0])),
        400,
        "'input'",
        "'data'",
        "binary_data_size",
    ),
    # -- Inference-Header-Content-Length lies -------------------------------------------------------------
    _case("length-past-body", "iris", _framed(_iris(), length=b"9999"), 400, LENGTH_MESSAGE, "'9999'"),
    _case("length-body-plus-one", "iris", _framed(_iris(), b"", length=str(TRUE_LENGTH + 1).encode()), 400, HEADER),
    _case("length-not-numeric", "iris", _framed(_iris(), length=b"abc"), 400, LENGTH_MESSAGE, "'abc'"),
    _case("length-negative", "iris", _framed(_iris(), length=b"-5"), 400, LENGTH_MESSAGE, "'-5'"),
    _case("length-plus-sign", "iris", _framed(_iris(), length=b"+98"), 400, LENGTH_MESSAGE, "'+98'"),
    _case("length-decimal", "iris", _framed(_iris(), length=b"98.0"), 400, LENGTH_MESSAGE, "'98.0'"),
    _case("length-hex", "iris", _framed(_iris(), length=b"0x62"), 400, LENGTH_MESSAGE, "'0x62'"),
    _case("length-inner-space", "iris", _framed(_iris(), length=b"9 8"), 400, LENGTH_MESSAGE, "'9 8'"),
    _case("length-empty", "iris", _framed(_iris(), length=b""), 400, LENGTH_MESSAGE, "''"),
    _case("length-huge", "iris", _framed(_iris(), length=b"9" * 30), 400, LENGTH_MESSAGE, "9" * 30),
    _case("length-5000-digits", "iris", _framed(_iris(), length=b"0" * 4999 + b"1"), 400, LENGTH_MESSAGE),
    *(
        _case(f"length-unicode-{label}", "iris", _framed(_iris(), length=digits.encode()), 400, LENGTH_MESSAGE)
        for label, digits in [
            ("superscript", "\u00b2"),
            ("arabic-indic", "\u0669\u0668"),
            ("fullwidth", "\uff19\uff18"),
        ]
    ),
    _case("length-zero", "iris", _framed(_iris(), length=b"0"), 400, "empty"),
    _case("length-cuts-json", "iris", _framed(_iris(), length=b"10"), 400, "not valid JSON"),
    _case(
        "length-into-binary",
        "iris",
        _framed(_iris(), length=str(TRUE_LENGTH + 2).encode()),
        400,
        "not valid JSON",
    ),
    _case(
        "length-header-repeated",  # the first says the truth, the second 5: which one did the client mean?
        "iris",
        _duplicate_length_headers(),
        400,
        HEADER,
    ),
    _case("no-length-header", "iris", (orjson.dumps(_iris()) + IRIS_BLOB, {}), 400, "not valid JSON"),
    _case("no-binary-part", "iris", (orjson.dumps(_iris()), {}), 400, "'input'", "0 binary bytes left"),
    _case(
        "binary-without-binary-input",
        "iris",
        _framed({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": IRIS_ROW}]}, b"xx"),
        400,
        "2 bytes of binary data",
        "no input",
    ),
    # -- binary_data_size lies ----------------------------------------------------------------------------
    _case("size-too-big", "iris", _framed(_iris(size=20)), 400, "'input'", "20 runs past the end", "16 binary bytes"),
    _case("size-huge", "iris", _framed(_iris(size=2**63)), 400, "9223372036854775808", "runs past the end"),
    _case("size-too-small", "iris", _framed(_iris(size=12)), 400, "'input'", "12 bytes", "needs 16"),
    _case("size-zero", "iris", _framed(_iris(size=0)), 400, "0 bytes", "needs 16"),
    _case("size-leaves-extra-bytes", "iris", _framed(_iris(), IRIS_BLOB + b"xx"), 400, "2 bytes of binary data"),
    _case(
        "sizes-shifted-between-inputs",  # 12 + 4 = 16 bytes in all, but each input needs 8
        "identity",
        _two_inputs(12, 4, b"\0" * 16),
        400,
        "'in_FP32'",
        "12 bytes",
        "needs 8",
    ),
    _case(
        "second-size-past-end",
        "identity",
        _two_inputs(8, 16, b"\0" * 16),
        400,
        "'in_INT32'",
        "runs past the end",
        "8 binary bytes left",
    ),
    _case("size-not-multiple-fp32", "iris", _framed(_iris(size=15), IRIS_BLOB[:15]), 400, "15 bytes", "needs 16"),
    _case(
        "size-not-multiple-fp16",
        "identity",
        _framed(
            {
                "inputs": [
                    {"name": "in_FP16", "datatype": "FP16", "shape": [1, 2], "parameters": {"binary_data_size": 3}}
                ]
            },
            b"abc",
        ),
        400,
        "'in_FP16'",
        "3 bytes",
        "needs 4",
    ),
    _case(
        "size-not-multiple-fp64",
        "identity",
        _framed(
            {
                "inputs": [
                    {"name": "in_FP64", "datatype": "FP64", "shape": [1, 2], "parameters": {"binary_data_size": 12}}
                ]
            },
            b"\0" * 12,
        ),
        400,
        "'in_FP64'",
        "12 bytes",
        "needs 16",
    ),
    *(
        _case(
            f"size-{label}", "iris", _framed(_iris(size=size)), 400, "binary_data_size must be a non-negative integer"
        )
        for label, size in [
            ("string", "16"),
            ("float", 16.0),
            ("bool", True),
            ("null", None),
            ("negative", -1),
            ("list", [16]),
            ("object", {"value": 16}),
        ]
    ),
    _case(
        "size-beyond-int64",
        "iris",
        _framed(
            b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"parameters":{"binary_data_size":1e30}}]}'
        ),
        400,
        "binary_data_size must be a non-negative integer",
    ),
    # -- BYTES length prefixes ----------------------------------------------------------------------------
    _case(
        "bytes-length-past-end",
        "identity",
        _bytes_input(struct.pack("<I", 100) + b"ab"),
        400,
        "'in_BYTES'",
        "says 100 bytes",
    ),
    _case(
        "bytes-huge-length",
        "identity",
        _bytes_input(struct.pack("<I", 2**32 - 1) + b"ab"),
        400,
        "'in_BYTES'",
        "says 4294967295 bytes",
    ),
    _case(
        "bytes-second-length-past-end",
        "identity",
        _bytes_input(_prefixed(b"a") + struct.pack("<I", 5) + b"b"),
        400,
        "'in_BYTES'",
        "element 1 says 5 bytes",
    ),
    _case(
        "bytes-truncated-prefix",
        "identity",
        _bytes_input(_prefixed(b"a") + b"\x01\x00"),
        400,
        "'in_BYTES'",
        "element 1",
        "truncated length prefix",
    ),
    _case(
        "bytes-too-few-elements",
        "identity",
        _bytes_input(_prefixed(b"a")),
        400,
        "'in_BYTES'",
        "1 BYTES elements",
        "needs 2",
    ),
    _case(
        "bytes-too-many-elements",
        "identity",
        _bytes_input(_prefixed(b"a", b"b", b"c")),
        400,
        "'in_BYTES'",
        "3 BYTES elements",
        "needs 2",
    ),
]


def _assert_serving(client: httpx.Client) -> None:
    """Live, and a well-framed binary iris request still gets its label."""
    assert client.get("/v2/health/live").status_code == 200
    body, headers = _framed(_iris())
    good = client.post("/v2/models/iris/infer", content=body, headers=headers)
    assert good.status_code == 200, good.text
    assert good.json()["outputs"][0]["data"] == [0]


@pytest.mark.parametrize(("path", "body", "headers", "status", "words"), CASES)
def test_bad_binary_request_is_answered_and_server_keeps_serving(
    client: httpx.Client, path: str, body: bytes, headers: Any, status: int, words: list[str]
) -> None:
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for word in words:
        assert word in error
    _assert_serving(client)


def test_server_still_serves_after_the_table(client: httpx.Client) -> None:
    assert client.get("/v2/health/ready").status_code == 200
    _assert_serving(client)
