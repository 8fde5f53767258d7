"""``modelserve.protocol.v2.grpc.codec``: protobuf messages to and from types, by round trips."""

from __future__ import annotations

import re

import numpy as np
import pytest

from modelserve.errors import InvalidInput
from modelserve.protocol.v2 import binary
from modelserve.protocol.v2.grpc import codec
from modelserve.protocol.v2.grpc import messages as pb
from modelserve.types import (
    DATATYPES,
    IndexEntry,
    InferOutput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelState,
    Signature,
    TensorSpec,
)
from tests.unit.protocol.test_v2_rest import SAMPLES


def _array(datatype: str) -> np.ndarray:
    values = SAMPLES[datatype]
    if datatype == "BYTES":
        array = np.empty(len(values), dtype=object)
        array[:] = [v.encode() for v in values]
    else:
        array = np.array(values, dtype=DATATYPES[datatype])
    return array.reshape(2, 3)


def _request(datatype: str, raw: bool) -> object:
    array = _array(datatype)
    msg = pb.ModelInferRequest(model_name="m", id="r1")
    tensor = msg.inputs.add(name="x", datatype=datatype, shape=[2, 3])
    if raw:
        msg.raw_input_contents.append(binary.encode_tensor(array))
    else:
        getattr(tensor.contents, codec.CONTENTS[datatype]).extend(array.ravel().tolist())
    return msg


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_raw_inputs_decode_exactly(datatype: str) -> None:
    request = codec.decode_infer_request(_request(datatype, raw=True))
    (tensor,) = request.inputs
    assert tensor.data.dtype == DATATYPES[datatype] and tensor.data.shape == (2, 3)
    np.testing.assert_array_equal(tensor.data, _array(datatype))
    assert request.id == "r1" and request.outputs is None


@pytest.mark.parametrize("datatype", [dt for dt in DATATYPES if dt in codec.CONTENTS])
def test_typed_inputs_decode_exactly(datatype: str) -> None:
    (tensor,) = codec.decode_infer_request(_request(datatype, raw=False)).inputs
    assert tensor.data.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(tensor.data, _array(datatype))


def test_raw_input_is_not_copied() -> None:
    msg = _request("FP32", raw=True)
    (tensor,) = codec.decode_infer_request(msg).inputs
    assert not tensor.data.flags.owndata  # a view on the message's bytes


@pytest.mark.parametrize("datatype", list(DATATYPES))
@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
def test_response_round_trip(datatype: str, typed: bool) -> None:
    array = _array(datatype)
    response = InferResponse("m", "3", [InferOutput("y", datatype, array)], id="r9", parameters={"n": 1})
    request = InferRequest([], parameters={"binary_data_output": not typed})
    msg = pb.ModelInferResponse.FromString(codec.encode_infer_response(response, request).SerializeToString())
    assert (msg.model_name, msg.model_version, msg.id) == ("m", "3", "r9")
    assert msg.parameters["n"].int64_param == 1
    (out,) = msg.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("y", datatype, [2, 3])
    if typed and datatype in codec.CONTENTS:
        assert not msg.raw_output_contents
        got = np.array(list(getattr(out.contents, codec.CONTENTS[datatype])), dtype=DATATYPES[datatype])
    else:  # raw by default; FP16 has no typed field, so it is raw even when typed output is asked for
        got = binary.decode_tensor("y", datatype, (2, 3), memoryview(msg.raw_output_contents[0]))
    np.testing.assert_array_equal(got.reshape(2, 3), array)


def test_parameters_round_trip_every_kind() -> None:
    msg = pb.ModelInferResponse()
    params = {"b": True, "i": -5, "u": 2**64 - 1, "f": 0.5, "s": "x", "j": {"k": [1, 2]}}
    codec.encode_parameters(msg.parameters, params)
    decoded = codec.decode_parameters(msg.parameters, "test")
    assert decoded == {**params, "j": '{"k":[1,2]}'}  # non-scalars travel as JSON text


def test_requested_outputs_and_parameters() -> None:
    msg = _request("FP32", raw=True)
    msg.outputs.add(name="y").parameters["binary_data"].bool_param = True
    msg.parameters["priority"].int64_param = 2
    request = codec.decode_infer_request(msg)
    assert [(o.name, o.parameters) for o in request.outputs] == [("y", {"binary_data": True})]
    assert request.parameters == {"priority": 2}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.ClearField("inputs"), "at least one tensor"),
        (lambda m: m.raw_input_contents.append(b""), "raw_input_contents has 2 entries but the request has 1"),
        (lambda m: m.inputs[0].contents.fp32_contents.append(1.0), "both in raw_input_contents and in contents"),
        (lambda m: setattr(m.inputs[0], "datatype", "FP128"), "unknown datatype 'FP128'"),
        (lambda m: m.inputs[0].shape.append(-1), "shape must be a list"),
        (lambda m: setattr(m.inputs[0], "name", ""), "inputs[0] needs a non-empty 'name'"),
        (lambda m: m.outputs.add(name=""), "outputs[0] needs a non-empty 'name'"),
        (lambda m: m.parameters["p"].Clear() or m.parameters["p"].ClearField("bool_param"), "'p' has no value"),
        (
            lambda m: m.raw_input_contents.__setitem__(0, b"\x00" * 23),
            "its binary data is 23 bytes but shape [2, 3] of FP32 needs 24",
        ),
    ],
)
def test_bad_requests_name_the_problem(mutate, message: str) -> None:
    msg = _request("FP32", raw=True)
    mutate(msg)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        codec.decode_infer_request(msg)


@pytest.mark.parametrize(
    ("datatype", "field", "values", "message"),
    [
        ("FP32", "int_contents", [1] * 6, "carries data in contents.int_contents; expected fp32_contents"),
        ("FP32", "fp32_contents", [1.0] * 5, "holds 5 values but shape \\[2, 3\\] needs 6"),
        ("INT8", "int_contents", [0, 0, 0, 0, 0, 128], "value 128 is out of range for INT8 \\[-128, 127\\]"),
        ("UINT16", "uint_contents", [0, 0, 0, 0, 0, 65536], "value 65536 is out of range for UINT16"),
        ("FP16", "fp32_contents", [1.0] * 6, "FP16 has no typed contents field; send it in raw_input_contents"),
    ],
)
def test_bad_typed_contents(datatype: str, field: str, values: list, message: str) -> None:
    msg = pb.ModelInferRequest(model_name="m")
    getattr(msg.inputs.add(name="x", datatype=datatype, shape=[2, 3]).contents, field).extend(values)
    with pytest.raises(InvalidInput, match=message):
        codec.decode_infer_request(msg)


def test_metadata_and_index() -> None:
    signature = Signature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "INT64", (-1,)),))
    meta = codec.encode_metadata(ModelMetadata("m", (1, 3), "onnxruntime_onnx", signature))
    assert list(meta.versions) == ["1", "3"] and meta.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("x", "FP32", [-1, 4])]
    index = codec.encode_index([IndexEntry("m", 1, ModelState.READY), IndexEntry("n", reason="bad config")])
    assert [(m.name, m.version, m.state, m.reason) for m in index.models] == [
        ("m", "1", "READY", ""),
        ("n", "", "", "bad config"),
    ]


def test_raw_bool_bytes_other_than_0_and_1_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="'flags': BOOL binary data must hold bytes 0 or 1, found 2"):
        binary.decode_tensor("flags", "BOOL", (3,), memoryview(b"\x01\x02\x00"))
    assert binary.decode_tensor("flags", "BOOL", (3,), memoryview(b"\x01\x00\x01")).tolist() == [True, False, True]
