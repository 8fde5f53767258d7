"""``modelserve.protocol.v2.rest``: Open Inference Protocol v2 REST/JSON, tested by round trips without sockets."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from modelserve.errors import InvalidInput, Unsupported
from modelserve.protocol.v2.rest import decode_infer_request, encode_error, encode_infer_response, encode_metadata
from modelserve.types import (
    DATATYPES,
    InferOutput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    Signature,
    TensorSpec,
)

# Six values per datatype, extremes included, each exact in its dtype.
SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, False, True, True, False],
    "UINT8": [0, 255, 1, 2, 3, 4],
    "UINT16": [0, 65535, 1, 2, 3, 4],
    "UINT32": [0, 2**32 - 1, 1, 2, 3, 4],
    "UINT64": [0, 2**64 - 1, 1, 2, 3, 4],
    "INT8": [-128, 127, -1, 0, 1, 2],
    "INT16": [-(2**15), 2**15 - 1, -1, 0, 1, 2],
    "INT32": [-(2**31), 2**31 - 1, -1, 0, 1, 2],
    "INT64": [-(2**63), 2**63 - 1, -1, 0, 1, 2],
    "FP16": [-65504.0, 65504.0, -1.5, 0.0, 0.25, 3.0],
    "FP32": [-3.0e38, 3.0e38, -1.5, 0.0, 0.25, 3.0],
    "FP64": [-1.0e308, 1.0e308, -0.1, 0.0, 0.1, 3.0],
    "BYTES": ["a", "", "café", "nul\x00", "\x00", "z"],
}


def _array(datatype: str, flat: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([s.encode("utf-8") for s in flat], dtype=object).reshape(shape)
    return np.array(flat, dtype=DATATYPES[datatype]).reshape(shape)


def _body(doc: Any) -> bytes:
    return orjson.dumps(doc)


def _one_input(**fields: Any) -> bytes:
    tensor = {"name": "pixels", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}
    tensor.update(fields)
    return _body({"inputs": [tensor]})


def test_samples_cover_every_datatype() -> None:
    assert set(SAMPLES) == set(DATATYPES)


# --- decoding requests -------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", list(DATATYPES))
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_every_datatype_decodes_to_its_dtype_and_shape(datatype: str, nested: bool) -> None:
    flat = SAMPLES[datatype]
    data = [flat[0:3], flat[3:6]] if nested else flat
    body = _body({"inputs": [{"name": "t", "shape": [2, 3], "datatype": datatype, "data": data}]})

    (tensor,) = decode_infer_request(body).inputs

    assert tensor.name == "t" and tensor.datatype == datatype
    assert tensor.data.dtype == DATATYPES[datatype]
    assert tensor.shape == (2, 3)
    assert tensor.data.tolist() == _array(datatype, flat, (2, 3)).tolist()
    if datatype == "BYTES":
        assert all(type(v) is bytes for v in tensor.data.ravel())


def test_request_fields_are_kept() -> None:
    body = _body(
        {
            "id": "req-7",
            "parameters": {"priority": 2},
            "inputs": [
                {"name": "a", "shape": [1, 2], "datatype": "INT32", "data": [1, 2], "parameters": {"k": "v"}},
                {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["x\x00"]},
            ],
            "outputs": [{"name": "y", "parameters": {"classification": 2}}, {"name": "z"}],
        }
    )
    request = decode_infer_request(body)
    assert request.id == "req-7"
    assert request.parameters == {"priority": 2}
    assert [i.name for i in request.inputs] == ["a", "b"]
    assert request.inputs[0].parameters == {"k": "v"}
    assert request.inputs[0].data.tolist() == [[1, 2]]
    assert request.inputs[1].parameters == {}
    assert request.inputs[1].data.tolist() == [b"x\x00"]
    assert request.outputs is not None
    assert [(o.name, o.parameters) for o in request.outputs] == [("y", {"classification": 2}), ("z", {})]


def test_optional_request_fields_default() -> None:
    request = decode_infer_request(_one_input())
    assert request.id is None
    assert request.parameters == {}
    assert request.outputs is None  # every output
    assert request.inputs[0].parameters == {}


def _deep(levels: int) -> Any:
    data: Any = 1.0
    for _ in range(levels):
        data = [data]
    return data


BAD_TENSORS = [
    pytest.param({"datatype": "FLOAT32"}, r"unknown datatype 'FLOAT32'", id="unknown-datatype"),
    pytest.param({"datatype": None}, r"unknown datatype None", id="null-datatype"),
    pytest.param({"shape": "2"}, r"shape must be a list", id="shape-not-list"),
    pytest.param({"shape": {"0": 2}}, r"shape must be a list", id="shape-object"),
    pytest.param({"shape": [2, -1], "data": [1.0, 2.0]}, r"shape must be .*non-negative.*-1", id="negative-dim"),
    pytest.param({"shape": [True, 2]}, r"shape must be .*integers.*True", id="bool-in-shape"),
    pytest.param({"shape": [2.0]}, r"shape must be .*integers", id="float-in-shape"),
    pytest.param({"shape": [1] * 33, "data": [1.0]}, r"at most 32", id="too-many-dims"),
    pytest.param({"shape": [2, 2]}, r"data has 2 elements but shape \[2, 2\] needs 4", id="count-too-small"),
    pytest.param({"shape": [1]}, r"data has 2 elements but shape \[1\] needs 1", id="count-too-large"),
    pytest.param(
        {"shape": [16, 2**60 + 2], "data": [1.0] * 32},
        rf"data has 32 elements but shape \[16, {2**60 + 2}\] needs {16 * (2**60 + 2)}",
        id="count-overflows-int64",
    ),
    pytest.param({"shape": [0, 2**62], "data": []}, r"shape", id="empty-but-unrepresentable-shape"),
    pytest.param({"shape": [0, 2**63], "data": []}, r"shape", id="empty-with-dim-over-int64"),
    pytest.param({"shape": [2, 2], "data": [[1, 2], [3]]}, r"ragged", id="ragged"),
    pytest.param({"shape": [1], "data": _deep(70)}, r"'pixels'", id="nested-too-deep"),
    pytest.param(
        {"shape": [4], "data": [[1, 2], [3, 4]]}, r"nested data has shape \[2, 2\] but shape says \[4\]", id="nest-4"
    ),
    pytest.param(
        {"shape": [2, 2], "data": [[[1, 2], [3, 4]]]},
        r"nested data has shape \[1, 2, 2\] but shape says \[2, 2\]",
        id="nest-extra-level",
    ),
    pytest.param({"data": [1.0, "2"]}, r"FP32 needs numbers in data, got strings", id="string-in-fp32"),
    pytest.param({"datatype": "INT32", "data": [1, 2.5]}, r"INT32 needs integers .*got numbers", id="float-in-int"),
    pytest.param({"datatype": "INT8", "data": [1, 128]}, r"128 is out of range for INT8", id="int8-range"),
    pytest.param({"datatype": "UINT8", "data": [1, 256]}, r"256 is out of range for UINT8", id="uint8-range"),
    pytest.param({"datatype": "UINT8", "data": [-1, 0]}, r"-1 is out of range for UINT8", id="uint8-negative"),
    pytest.param({"datatype": "UINT64", "data": [-1, 1]}, r"out of range for UINT64", id="uint64-negative"),
    pytest.param({"datatype": "INT64", "data": [0, 2**63]}, r"out of range for INT64", id="int64-range"),
    pytest.param({"datatype": "FP16", "data": [1.0, 1e5]}, r"out of range for FP16", id="fp16-range"),
    pytest.param({"datatype": "FP16", "data": [1, 100000]}, r"out of range for FP16", id="fp16-int-range"),
    pytest.param({"datatype": "FP32", "data": [1.0, -1e39]}, r"out of range for FP32", id="fp32-range"),
    pytest.param({"data": [True, False]}, r"FP32 needs numbers in data, got booleans", id="bools-in-fp32"),
    pytest.param({"data": [0.5, True]}, r"(?i)bool", id="bool-mixed-into-fp32"),
    pytest.param({"datatype": "BOOL", "data": [1, 0]}, r"BOOL needs true/false .*got integers", id="ints-in-bool"),
    pytest.param({"datatype": "BYTES", "data": ["a", 1]}, r"BYTES needs strings in data, got int", id="int-in-bytes"),
    pytest.param({"data": 1.0}, r"'data' must be a list", id="data-not-list"),
    pytest.param({"parameters": [1]}, r"input 'pixels': 'parameters' must be an object", id="input-parameters"),
]


@pytest.mark.parametrize(("fields", "match"), BAD_TENSORS)
def test_bad_tensors_are_invalid_input_naming_the_input(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as info:
        decode_infer_request(_one_input(**fields))
    assert "'pixels'" in str(info.value)


@pytest.mark.parametrize("key", ["shape", "datatype", "data"])
def test_input_missing_a_field_is_named(key: str) -> None:
    tensor = {"name": "pixels", "shape": [1], "datatype": "FP32", "data": [1.0]}
    del tensor[key]
    with pytest.raises(InvalidInput, match=rf"input 'pixels' lacks '{key}'"):
        decode_infer_request(_body({"inputs": [tensor]}))


GOOD_INPUT = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}

BAD_REQUESTS = [
    pytest.param(b"", r"request body is empty", id="empty-body"),
    pytest.param(b'{"inputs": [', r"request body is not valid JSON", id="truncated-json"),
    pytest.param(b"{'inputs': []}", r"request body is not valid JSON", id="single-quotes"),
    pytest.param(b"\xff\xfe", r"request body is not valid JSON", id="not-utf8"),
    pytest.param(b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [NaN]}]}', r"not valid JSON",
                 id="nan"),
    pytest.param(_body([GOOD_INPUT]), r"must be a JSON object, got list", id="array-body"),
    pytest.param(_body("inputs"), r"must be a JSON object, got str", id="string-body"),
    pytest.param(_body(None), r"must be a JSON object, got NoneType", id="null-body"),
    pytest.param(_body({}), r"needs 'inputs'", id="no-inputs"),
    pytest.param(_body({"inputs": []}), r"needs 'inputs'", id="empty-inputs"),
    pytest.param(_body({"inputs": GOOD_INPUT}), r"needs 'inputs'", id="inputs-object"),
    pytest.param(_body({"inputs": ["x"]}), r"inputs\[0\] must be an object", id="input-not-object"),
    pytest.param(_body({"inputs": [GOOD_INPUT, {"shape": [1]}]}), r"inputs\[1\] needs a non-empty string 'name'",
                 id="input-without-name"),
    pytest.param(_body({"inputs": [{**GOOD_INPUT, "name": ""}]}), r"inputs\[0\] needs a non-empty string 'name'",
                 id="input-empty-name"),
    pytest.param(_body({"inputs": [{**GOOD_INPUT, "name": 5}]}), r"inputs\[0\] needs a non-empty string 'name', got 5",
                 id="input-name-number"),
    pytest.param(_body({"id": 7, "inputs": [GOOD_INPUT]}), r"'id' must be a string, got 7", id="id-number"),
    pytest.param(_body({"id": ["a"], "inputs": [GOOD_INPUT]}), r"'id' must be a string", id="id-list"),
    pytest.param(_body({"inputs": [GOOD_INPUT], "outputs": "y"}), r"'outputs' must be a list", id="outputs-string"),
    pytest.param(_body({"inputs": [GOOD_INPUT], "outputs": {"name": "y"}}), r"'outputs' must be a list",
                 id="outputs-object"),
    pytest.param(_body({"inputs": [GOOD_INPUT], "outputs": ["y"]}), r"outputs\[0\] must be an object .*'name'",
                 id="output-not-object"),
    pytest.param(_body({"inputs": [GOOD_INPUT], "outputs": [{"name": "y"}, {}]}), r"outputs\[1\] must be an object",
                 id="output-without-name"),
    pytest.param(_body({"inputs": [GOOD_INPUT], "outputs": [{"name": 1}]}), r"outputs\[0\] .*string 'name'",
                 id="output-name-number"),
    pytest.param(_body({"inputs": [GOOD_INPUT], "outputs": [{"name": "y", "parameters": 1}]}),
                 r"output 'y': 'parameters' must be an object", id="output-parameters"),
    pytest.param(_body({"inputs": [GOOD_INPUT], "parameters": "fast"}), r"request: 'parameters' must be an object",
                 id="request-parameters-string"),
    pytest.param(_body({"inputs": [GOOD_INPUT], "parameters": []}), r"request: 'parameters' must be an object",
                 id="request-parameters-list"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "match"), BAD_REQUESTS)
def test_bad_requests_are_invalid_input(body: bytes, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        decode_infer_request(body)


# --- encoding responses ------------------------------------------------------------------------


def _encode_json(response: InferResponse) -> Any:
    """The response as plain JSON (no binary outputs were asked for), parsed."""
    body, json_length = encode_infer_response(response)
    assert json_length is None
    return orjson.loads(body)


def _response(**kwargs: Any) -> InferResponse:
    outputs = [
        InferOutput(datatype, datatype, _array(datatype, SAMPLES[datatype], (3, 2)), {}) for datatype in DATATYPES
    ]
    return InferResponse(model_name="m", model_version="4", outputs=outputs, **kwargs)


def test_response_carries_every_field_and_datatype() -> None:
    doc = _encode_json(_response(id="req-1", parameters={"sequence_end": True}))

    assert doc["model_name"] == "m"
    assert doc["model_version"] == "4"
    assert doc["id"] == "req-1"
    assert doc["parameters"] == {"sequence_end": True}
    assert [o["name"] for o in doc["outputs"]] == list(DATATYPES)
    for out in doc["outputs"]:
        datatype = out["datatype"]
        assert out["name"] == datatype
        assert out["shape"] == [3, 2]
        assert out["data"] == SAMPLES[datatype], datatype  # flat, row major


def test_response_omits_id_and_parameters_when_not_given() -> None:
    doc = _encode_json(_response())
    assert "id" not in doc
    assert "parameters" not in doc
    assert set(doc) == {"model_name", "model_version", "outputs"}


def test_response_data_is_row_major_for_any_memory_layout() -> None:
    transposed = np.arange(6, dtype=np.int64).reshape(2, 3).T  # [[0, 3], [1, 4], [2, 5]], not C-contiguous
    fortran = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    outputs = [InferOutput("t", "INT64", transposed), InferOutput("f", "FP32", fortran)]
    doc = _encode_json(InferResponse("m", "1", outputs))
    assert doc["outputs"][0]["shape"] == [3, 2]
    assert doc["outputs"][0]["data"] == [0, 3, 1, 4, 2, 5]
    assert doc["outputs"][1]["shape"] == [2, 3]
    assert doc["outputs"][1]["data"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_scalar_and_empty_outputs() -> None:
    outputs = [
        InferOutput("s", "FP64", np.array(2.5)),
        InferOutput("e", "INT32", np.empty((0, 3), dtype=np.int32)),
        InferOutput("b", "BYTES", np.empty((0,), dtype=object)),
    ]
    doc = _encode_json(InferResponse("m", "1", outputs))
    assert [(o["shape"], o["data"]) for o in doc["outputs"]] == [([], [2.5]), ([0, 3], []), ([0], [])]


def test_bytes_output_that_is_not_utf8_is_unsupported() -> None:
    output = InferOutput("blob", "BYTES", np.array([b"ok", b"\xff\x00"], dtype=object))
    with pytest.raises(Unsupported, match=r"'blob'.*not UTF-8"):
        encode_infer_response(InferResponse("m", "1", [output]))


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_response_round_trips_into_a_request(datatype: str) -> None:
    """An output, sent back as an input, decodes to the same array: the JSON encoding loses nothing."""
    original = _array(datatype, SAMPLES[datatype], (3, 2))
    response = InferResponse("m", "1", [InferOutput("t", datatype, original)])
    out = _encode_json(response)["outputs"][0]
    request = decode_infer_request(_body({"id": "again", "inputs": [out]}))
    (tensor,) = request.inputs
    assert request.id == "again"
    assert tensor.datatype == datatype
    assert tensor.data.dtype == original.dtype
    assert tensor.shape == original.shape
    assert tensor.data.tolist() == original.tolist()


# --- binary tensor extension -------------------------------------------------------------------


def _asking(doc: dict[str, Any]) -> InferRequest:
    """A decoded request that carries ``doc``'s output choices (its one input does not matter here)."""
    return decode_infer_request(
        _body({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0.0]}], **doc})
    )


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_binary_response_round_trips_into_a_binary_request(datatype: str) -> None:
    original = _array(datatype, SAMPLES[datatype], (3, 2))
    if datatype == "BYTES":
        original[0, 0] = b"\xff\x00 not utf-8\x00"
    response = InferResponse("m", "1", [InferOutput("t", datatype, original)], id="r")
    body, json_length = encode_infer_response(response, _asking({"parameters": {"binary_data_output": True}}))

    assert json_length is not None
    header = orjson.loads(body[:json_length])
    (out,) = header["outputs"]
    assert "data" not in out
    assert (out["name"], out["datatype"], out["shape"]) == ("t", datatype, [3, 2])
    assert out["parameters"]["binary_data_size"] == len(body) - json_length
    assert header["id"] == "r"

    request_header = _body({"inputs": [out]})
    (tensor,) = decode_infer_request(request_header + body[json_length:], len(request_header)).inputs
    assert tensor.data.dtype == original.dtype
    assert tensor.shape == (3, 2)
    assert tensor.data.tolist() == original.tolist()


def test_binary_is_chosen_per_output() -> None:
    outputs = [InferOutput("a", "INT32", np.arange(3, dtype=np.int32)), InferOutput("b", "FP64", np.ones(2))]
    request = _asking({"outputs": [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}]})
    body, json_length = encode_infer_response(InferResponse("m", "1", outputs), request)
    assert json_length is not None
    a, b = orjson.loads(body[:json_length])["outputs"]
    assert a["parameters"] == {"binary_data_size": 12} and "data" not in a
    assert b["data"] == [1.0, 1.0] and "parameters" not in b
    assert np.frombuffer(body[json_length:], dtype="<i4").tolist() == [0, 1, 2]


def test_json_is_the_default_even_with_a_request() -> None:
    outputs = [InferOutput("a", "INT32", np.arange(3, dtype=np.int32))]
    body, json_length = encode_infer_response(InferResponse("m", "1", outputs), _asking({}))
    assert json_length is None
    assert orjson.loads(body)["outputs"][0]["data"] == [0, 1, 2]


def _binary_request(size: object, blob: bytes, shape: list[int]) -> tuple[bytes, int]:
    tensor = {"name": "pixels", "shape": shape, "datatype": "INT32", "parameters": {"binary_data_size": size}}
    header = _body({"inputs": [tensor]})
    return header + blob, len(header)


@pytest.mark.parametrize(
    ("size", "blob", "shape", "match"),
    [
        pytest.param(8, b"\0" * 4, [2], r"'pixels': binary_data_size 8 runs past the end", id="past-the-end"),
        pytest.param(8, b"\0" * 12, [2], r"4 bytes of binary data that no input", id="unclaimed-bytes"),
        pytest.param(4, b"\0" * 4, [2], r"'pixels': its binary data is 4 bytes but shape \[2\] of INT32 needs 8",
                     id="size-vs-shape"),
        pytest.param(8, b"\0" * 8, [16, 2**60 + 2], r"'pixels': its binary data is 8 bytes but shape", id="overflow"),
        pytest.param(0, b"", [0, 2**62], r"'pixels'.*shape", id="empty-but-unrepresentable-shape"),
        pytest.param(-1, b"", [2], r"'pixels': binary_data_size must be a non-negative integer", id="negative-size"),
        pytest.param("8", b"\0" * 8, [2], r"'pixels': binary_data_size must be a non-negative integer",
                     id="string-size"),
    ],
)  # fmt: skip
def test_bad_binary_requests(size: object, blob: bytes, shape: list[int], match: str) -> None:
    body, json_length = _binary_request(size, blob, shape)
    with pytest.raises(InvalidInput, match=match):
        decode_infer_request(body, json_length)


# --- metadata and errors -----------------------------------------------------------------------


SIGNATURE = Signature(
    inputs=(TensorSpec("x", "FP32", (-1, 4)), TensorSpec("mask", "BOOL", ())),
    outputs=(TensorSpec("label", "INT64", (-1,)), TensorSpec("proba", "FP64", (-1, 3))),
)


def test_metadata() -> None:
    meta = ModelMetadata("iris", (1, 12), "onnxruntime_onnx", SIGNATURE, {"author": "me", "classes": 3})
    doc = orjson.loads(encode_metadata(meta))
    assert doc == {
        "name": "iris",
        "versions": ["1", "12"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "mask", "datatype": "BOOL", "shape": []},
        ],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "proba", "datatype": "FP64", "shape": [-1, 3]},
        ],
        "parameters": {"author": "me", "classes": 3},
    }


def test_metadata_without_free_form_metadata_has_no_parameters() -> None:
    doc = orjson.loads(encode_metadata(ModelMetadata("iris", (), "sklearn", SIGNATURE)))
    assert doc["versions"] == []
    assert "parameters" not in doc


def test_error_body() -> None:
    assert orjson.loads(encode_error("model 'nope' not found")) == {"error": "model 'nope' not found"}
