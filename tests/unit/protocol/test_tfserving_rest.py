"""``modelserve.protocol.tfserving.rest``: the TF Serving v1 REST API, tested by round trips without sockets."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest

from modelserve.errors import InvalidInput
from modelserve.protocol.tfserving.rest import (
    decode_predict_request,
    encode_metadata,
    encode_predict_response,
    encode_status,
)
from modelserve.types import (
    DATATYPES,
    InferInput,
    InferOutput,
    InferResponse,
    ModelMetadata,
    ModelState,
    Signature,
    TensorSpec,
    VersionStatus,
)

ONE = Signature(inputs=(TensorSpec("x", "FP32", (-1, 2)),), outputs=(TensorSpec("y", "FP32", (-1,)),))
TWO = Signature(
    inputs=(TensorSpec("ids", "INT64", (-1, 2)), TensorSpec("text", "BYTES", (-1,))),
    outputs=(TensorSpec("y", "FP32", (-1,)),),
)
BLOB = Signature(inputs=(TensorSpec("blob", "BYTES", (-1,)),), outputs=(TensorSpec("y", "FP32", (-1,)),))

RAW = [b"\xff\xd8\x00binary", b"tail\x00\x00", b""]  # not UTF-8, trailing NULs, empty


def _b64(raw: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(raw).decode("ascii")}


def _decode(doc: Any, signature: Signature) -> tuple[dict[str, InferInput], bool]:
    request, rows = decode_predict_request(orjson.dumps(doc), signature)
    assert request.id is None and request.outputs is None
    return {i.name: i for i in request.inputs}, rows


# --- decode_predict_request --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "rows"),
    [
        pytest.param({"instances": [[1, 2], [3.5, 4]]}, True, id="row-arrays"),
        pytest.param({"instances": [{"x": [1, 2]}, {"x": [3.5, 4]}]}, True, id="row-objects"),
        pytest.param({"inputs": [[1, 2], [3.5, 4]]}, False, id="columnar-value"),
        pytest.param({"inputs": {"x": [[1, 2], [3.5, 4]]}}, False, id="columnar-object"),
        pytest.param({"signature_name": "serving_default", "instances": [[1, 2], [3.5, 4]]}, True, id="named-default"),
        pytest.param({"signature_name": "", "instances": [[1, 2], [3.5, 4]]}, True, id="empty-name-is-default"),
    ],
)
def test_one_input(doc: dict[str, Any], rows: bool) -> None:
    inputs, got_rows = _decode(doc, ONE)
    assert got_rows is rows
    assert list(inputs) == ["x"]
    x = inputs["x"]
    assert x.datatype == "FP32" and x.data.dtype == np.float32
    assert x.shape == (2, 2)
    assert x.data.tolist() == [[1.0, 2.0], [3.5, 4.0]]


def test_two_inputs_row_format() -> None:
    doc = {"instances": [{"ids": [1, 2], "text": "héllo"}, {"text": _b64(RAW[0]), "ids": [3, 4]}]}
    inputs, rows = _decode(doc, TWO)
    assert rows is True
    assert list(inputs) == ["ids", "text"]
    assert inputs["ids"].data.dtype == np.int64 and inputs["ids"].data.tolist() == [[1, 2], [3, 4]]
    assert inputs["text"].data.dtype == object
    assert inputs["text"].data.tolist() == ["héllo".encode(), RAW[0]]


def test_two_inputs_columnar_format() -> None:
    doc = {"inputs": {"text": ["a", "b", "c"], "ids": [[1, 2], [3, 4], [5, 6]]}}
    inputs, rows = _decode(doc, TWO)
    assert rows is False
    assert inputs["ids"].data.dtype == np.int64 and inputs["ids"].shape == (3, 2)
    assert inputs["text"].data.tolist() == [b"a", b"b", b"c"]


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"instances": [_b64(r) for r in RAW]}, id="row-b64"),
        pytest.param({"instances": [{"blob": _b64(r)} for r in RAW]}, id="row-objects-b64"),
        pytest.param({"inputs": [_b64(r) for r in RAW]}, id="columnar-b64"),
        pytest.param({"inputs": {"blob": [_b64(r) for r in RAW]}}, id="columnar-object-b64"),
    ],
)
def test_b64_binary_strings_are_decoded_intact(doc: dict[str, Any]) -> None:
    inputs, _ = _decode(doc, BLOB)
    blob = inputs["blob"].data
    assert blob.dtype == object and blob.shape == (3,)
    assert blob.tolist() == RAW
    assert all(type(v) is bytes for v in blob)


def test_text_and_b64_can_be_mixed_in_one_input() -> None:
    inputs, _ = _decode({"instances": ["plain", _b64(RAW[1])]}, BLOB)
    assert inputs["blob"].data.tolist() == [b"plain", RAW[1]]


BAD_PREDICTS = [
    pytest.param(b"", ONE, r"request body is empty", id="empty-body"),
    pytest.param(b'{"instances": [', ONE, r"not valid JSON", id="malformed"),
    pytest.param(b"[[1, 2]]", ONE, r"must be a JSON object, got list", id="not-object"),
    pytest.param({"signature_name": "predict", "instances": [[1, 2]]}, ONE, r"signature_name 'predict' not found",
                 id="other-signature"),
    pytest.param({"instances": [[1, 2]], "inputs": [[1, 2]]}, ONE, r"exactly one of 'instances'.*or 'inputs'",
                 id="both"),
    pytest.param({"signature_name": "serving_default"}, ONE, r"exactly one of 'instances'.*or 'inputs'",
                 id="neither"),
    pytest.param({"instances": []}, ONE, r"'instances' must be a non-empty list", id="empty-instances"),
    pytest.param({"instances": {"x": [1, 2]}}, ONE, r"'instances' must be a non-empty list", id="instances-object"),
    pytest.param({"instances": [{"x": [1, 2], "z": [0]}]}, ONE, r"unknown input\(s\) \['z'\]", id="row-unknown"),
    pytest.param({"inputs": {"x": [[1, 2]], "z": [0]}}, ONE, r"unknown input\(s\) \['z'\]", id="columnar-unknown"),
    pytest.param({"instances": [{"ids": [1, 2], "text": "a", "extra": 1}]}, TWO, r"unknown input\(s\) \['extra'\]",
                 id="row-unknown-two"),
    pytest.param({"instances": [[1, 2]]}, TWO, r"inputs \['ids', 'text'\].*object keyed by input name",
                 id="row-arrays-for-two"),
    pytest.param({"instances": [{"ids": [1, 2], "text": "a"}, {"ids": [3, 4]}]}, TWO, r"instances \[1\] lack .*'text'",
                 id="row-missing"),
    pytest.param({"inputs": [[1, 2]]}, TWO, r"object keyed by name", id="columnar-value-for-two"),
    pytest.param({"inputs": {"ids": [[1, 2]]}}, TWO, r"'inputs' lacks \['text'\]", id="columnar-missing"),
    pytest.param({"instances": [[1, 2], [3]]}, ONE, r"input 'x': .*ragged", id="ragged"),
    pytest.param({"instances": [["a", "b"]]}, ONE, r"input 'x': datatype FP32 needs numbers in data, got strings",
                 id="strings-for-fp32"),
    pytest.param({"inputs": {"ids": [[1.5, 2]], "text": ["a"]}}, TWO, r"input 'ids': .*INT64 needs integers",
                 id="floats-for-int64"),
    pytest.param({"instances": [1, 2]}, BLOB, r"input 'blob': .*BYTES needs strings", id="numbers-for-bytes"),
    pytest.param({"instances": [{"b64": "***"}]}, BLOB, r"'blob'.*base64|base64.*'blob'", id="bad-base64"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "signature", "match"), BAD_PREDICTS)
def test_bad_predict_requests(doc: Any, signature: Signature, match: str) -> None:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    with pytest.raises(InvalidInput, match=match):
        decode_predict_request(body, signature)


# --- encode_predict_response -------------------------------------------------------------------


def _predict(outputs: list[InferOutput], rows: bool) -> Any:
    return orjson.loads(encode_predict_response(InferResponse("m", "1", outputs), rows))


SCORES = InferOutput("scores", "FP32", np.array([[0.5, 0.25], [1.0, 0.0], [2.0, 4.0]], dtype=np.float32))
LABELS = InferOutput("labels", "BYTES", np.array([b"cat", b"\xff\x00", "é".encode()], dtype=object))


def test_one_output_rows() -> None:
    assert _predict([SCORES], rows=True) == {"predictions": [[0.5, 0.25], [1.0, 0.0], [2.0, 4.0]]}


def test_one_output_columnar() -> None:
    assert _predict([SCORES], rows=False) == {"outputs": [[0.5, 0.25], [1.0, 0.0], [2.0, 4.0]]}


def test_two_outputs_rows_give_one_object_per_instance() -> None:
    assert _predict([SCORES, LABELS], rows=True) == {
        "predictions": [
            {"scores": [0.5, 0.25], "labels": "cat"},
            {"scores": [1.0, 0.0], "labels": {"b64": base64.b64encode(b"\xff\x00").decode()}},
            {"scores": [2.0, 4.0], "labels": "é"},
        ]
    }


def test_two_outputs_columnar_give_an_object() -> None:
    assert _predict([SCORES, LABELS], rows=False) == {
        "outputs": {
            "scores": [[0.5, 0.25], [1.0, 0.0], [2.0, 4.0]],
            "labels": ["cat", {"b64": "/wA="}, "é"],
        }
    }


@pytest.mark.parametrize("rows", [True, False], ids=["rows", "columnar"])
def test_bytes_output_text_or_b64(rows: bool) -> None:
    doc = _predict([InferOutput("o", "BYTES", np.array([[b"ok", b"\x00\xff"]], dtype=object))], rows)
    assert doc == {"predictions" if rows else "outputs": [["ok", {"b64": "AP8="}]]}


def test_row_outputs_with_different_batch_sizes_are_rejected() -> None:
    short = InferOutput("n", "INT64", np.array([1, 2], dtype=np.int64))
    with pytest.raises(InvalidInput, match="differ in batch size"):
        encode_predict_response(InferResponse("m", "1", [SCORES, short]), rows=True)


def test_transposed_output_is_written_in_logical_order() -> None:
    transposed = np.arange(6, dtype=np.int64).reshape(2, 3).T
    assert _predict([InferOutput("t", "INT64", transposed)], rows=True) == {"predictions": [[0, 3], [1, 4], [2, 5]]}


def _identity(request_doc: dict[str, Any], signature: Signature) -> Any:
    """Decode a predict request, answer with its inputs as outputs, encode in the request's format."""
    request, rows = decode_predict_request(orjson.dumps(request_doc), signature)
    outputs = [InferOutput(i.name, i.datatype, i.data) for i in request.inputs]
    return orjson.loads(encode_predict_response(InferResponse("m", "1", outputs), rows))


@pytest.mark.parametrize(
    ("doc", "signature", "expected"),
    [
        pytest.param({"instances": [[1.5, 2], [3, 4]]}, ONE, {"predictions": [[1.5, 2.0], [3.0, 4.0]]}, id="rows"),
        pytest.param({"inputs": [[1.5, 2]]}, ONE, {"outputs": [[1.5, 2.0]]}, id="columnar"),
        pytest.param(
            {"instances": [_b64(r) for r in RAW] + ["text"]},
            BLOB,
            {"predictions": [_b64(RAW[0]), "tail\x00\x00", "", "text"]},  # UTF-8 goes back as text
            id="b64-rows",
        ),
        pytest.param(
            {"instances": [{"ids": [1, 2], "text": "a"}, {"ids": [3, 4], "text": _b64(b"\xfe")}]},
            TWO,
            {"predictions": [{"ids": [1, 2], "text": "a"}, {"ids": [3, 4], "text": _b64(b"\xfe")}]},
            id="two-rows",
        ),
        pytest.param(
            {"inputs": {"ids": [[1, 2]], "text": ["a"]}},
            TWO,
            {"outputs": {"ids": [[1, 2]], "text": ["a"]}},
            id="two-columnar",
        ),
    ],
)
def test_predict_round_trip(doc: dict[str, Any], signature: Signature, expected: Any) -> None:
    assert _identity(doc, signature) == expected


# --- encode_status and encode_metadata ---------------------------------------------------------


def test_status_maps_states_and_sorts_newest_first() -> None:
    statuses = [
        VersionStatus(1, ModelState.READY),
        VersionStatus(3, ModelState.FAILED, "model.onnx: invalid protobuf"),
        VersionStatus(2, ModelState.LOADING),
    ]
    doc = orjson.loads(encode_status(statuses))
    versions = doc["model_version_status"]
    assert [v["version"] for v in versions] == ["3", "2", "1"]
    assert [v["state"] for v in versions] == ["END", "LOADING", "AVAILABLE"]
    failed, loading, ready = versions
    assert failed["status"]["error_code"] != "OK"
    assert failed["status"]["error_message"] == "model.onnx: invalid protobuf"
    assert ready["status"] == {"error_code": "OK", "error_message": ""}
    assert loading["status"]["error_code"] == "OK"


def test_status_sorts_numerically_not_as_text() -> None:
    doc = orjson.loads(encode_status([VersionStatus(v, ModelState.READY) for v in (9, 10, 2)]))
    assert [v["version"] for v in doc["model_version_status"]] == ["10", "9", "2"]


TF_DTYPES = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}


def test_metadata_signature_def() -> None:
    signature = Signature(
        inputs=(TensorSpec("x", "FP32", (-1, 4)),),
        outputs=(TensorSpec("label", "INT64", (-1,)), TensorSpec("name", "BYTES", ())),
    )
    doc = orjson.loads(encode_metadata(ModelMetadata("iris", (1, 2), "onnx", signature), 2))
    assert doc == {
        "model_spec": {"name": "iris", "signature_name": "", "version": "2"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {
                            "x": {
                                "dtype": "DT_FLOAT",
                                "tensor_shape": {
                                    "dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}],
                                    "unknown_rank": False,
                                },
                                "name": "x",
                            }
                        },
                        "outputs": {
                            "label": {
                                "dtype": "DT_INT64",
                                "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
                                "name": "label",
                            },
                            "name": {
                                "dtype": "DT_STRING",
                                "tensor_shape": {"dim": [], "unknown_rank": False},
                                "name": "name",
                            },
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_metadata_dtype_names(datatype: str) -> None:
    signature = Signature(inputs=(TensorSpec("t", datatype, (3,)),), outputs=())
    doc = orjson.loads(encode_metadata(ModelMetadata("m", (1,), "onnx", signature), 1))
    tensor = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["t"]
    assert tensor["dtype"] == TF_DTYPES[datatype]
    assert tensor["tensor_shape"]["dim"] == [{"size": "3", "name": ""}]
