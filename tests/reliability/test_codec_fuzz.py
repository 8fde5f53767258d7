"""Property-based fuzzing of the sans-I/O codecs in ``modelserve/protocol`` (issue 12).

Three families of properties, each over every path a tensor can take (v2 JSON, the v2 binary
extension, v2 gRPC typed and raw, TF Serving v1 JSON):

* round trips: a tensor of any datatype (BOOL and BYTES included), rank 0-4, zero-sized
  dimensions included, encoded by the production encoder and decoded by the production decoder,
  comes back with the same values, datatype and shape. JSON cannot carry NaN or infinities, so the
  JSON paths draw finite floats; the binary paths draw any bit pattern;
* arbitrary input (bytes, JSON values shaped like requests, protobuf messages) makes a decoder
  either succeed or raise a ``ModelServeError`` whose code maps to a 4xx, never anything else;
* lying lengths in the binary extension (``Inference-Header-Content-Length``,
  ``binary_data_size``, BYTES length prefixes) never read past the body and never allocate much
  more than the body's size.

Budgets are fixed for CI: ``derandomize=True`` (the same examples on every run), no deadline,
at most 200 examples a property.
"""

from __future__ import annotations

import math
import struct
import tracemalloc
from typing import Any

import numpy as np
import orjson
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelserve.errors import ModelServeError
from modelserve.protocol.status import http_status
from modelserve.protocol.tfserving import rest as tfs
from modelserve.protocol.v2 import binary, rest
from modelserve.protocol.v2.grpc import codec
from modelserve.protocol.v2.grpc import messages as pb
from modelserve.types import DATATYPES, InferOutput, InferRequest, InferResponse, RequestedOutput, Signature, TensorSpec

CI = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SMALL = settings(CI, max_examples=100)
NUMERIC = [d for d in DATATYPES if d != "BYTES"]
SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)


# --- strategies ------------------------------------------------------------------------------


@st.composite
def arrays(draw: st.DrawFn, *, json_safe: bool, datatypes: list[str] | None = None) -> tuple[str, np.ndarray]:
    """(datatype, array) of any datatype and shape; ``json_safe``: finite floats, UTF-8 BYTES."""
    datatype = draw(st.sampled_from(datatypes or list(DATATYPES)))
    shape = draw(SHAPES)
    if datatype == "BYTES":
        items = st.text(max_size=8).map(str.encode) if json_safe else st.binary(max_size=8)
        values = draw(st.lists(items, min_size=math.prod(shape), max_size=math.prod(shape)))
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return datatype, array.reshape(shape)
    dtype = DATATYPES[datatype]
    elements = None
    if json_safe and dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
    return datatype, draw(hnp.arrays(dtype, shape, elements=elements))


def same(expected: np.ndarray, got: np.ndarray, datatype: str, got_datatype: str) -> None:
    assert got_datatype == datatype
    assert got.shape == expected.shape
    assert got.dtype == DATATYPES[datatype]
    if datatype == "BYTES":
        assert got.ravel().tolist() == expected.ravel().tolist()
    else:  # bit for bit: NaN payloads and -0.0 included
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes()


def response(tensors: list[tuple[str, np.ndarray]]) -> InferResponse:
    outputs = [InferOutput(f"t{i}", datatype, array) for i, (datatype, array) in enumerate(tensors)]
    return InferResponse("m", "1", outputs, id="r")


# --- round trips ---------------------------------------------------------------------------


def _as_request_body(body: bytes, json_length: int | None) -> tuple[bytes, int | None]:
    """An encoded v2 response turned into the request that carries the same tensors."""
    head = orjson.loads(body if json_length is None else body[:json_length])
    blobs = b"" if json_length is None else body[json_length:]
    new_head = orjson.dumps({"id": head["id"], "inputs": head["outputs"]})
    return new_head + blobs, None if json_length is None else len(new_head)


@CI
@given(st.lists(arrays(json_safe=True), min_size=1, max_size=3), st.lists(st.booleans(), min_size=3, max_size=3))
def test_v2_rest_round_trip(tensors: list[tuple[str, np.ndarray]], binary_flags: list[bool]) -> None:
    """JSON and binary-extension outputs, mixed in one body, decode to the tensors encoded."""
    wanted = [RequestedOutput(f"t{i}", {"binary_data": flag}) for i, flag in enumerate(binary_flags[: len(tensors)])]
    body, json_length = rest.encode_infer_response(response(tensors), InferRequest([], outputs=wanted))
    body, json_length = _as_request_body(body, json_length)
    if json_length is not None:  # the HTTP header a client would send, parsed as the server does
        assert binary.header_length(str(json_length), len(body)) == json_length
    decoded = rest.decode_infer_request(body, json_length)
    assert decoded.id == "r" and len(decoded.inputs) == len(tensors)
    for (datatype, array), tensor in zip(tensors, decoded.inputs, strict=True):
        same(array, tensor.data, datatype, tensor.datatype)


@CI
@given(st.lists(arrays(json_safe=False), min_size=1, max_size=3))
def test_v2_binary_round_trip(tensors: list[tuple[str, np.ndarray]]) -> None:
    """Every output binary: any bit pattern (NaN, infinities) and any bytes survive."""
    request = InferRequest([], parameters={"binary_data_output": True})
    body, json_length = _as_request_body(*rest.encode_infer_response(response(tensors), request))
    assert json_length is not None
    decoded = rest.decode_infer_request(body, json_length)
    for (datatype, array), tensor in zip(tensors, decoded.inputs, strict=True):
        same(array, tensor.data, datatype, tensor.datatype)


@CI
@given(st.lists(arrays(json_safe=False), min_size=1, max_size=3), st.booleans())
def test_grpc_round_trip(tensors: list[tuple[str, np.ndarray]], typed: bool) -> None:
    """Raw and typed contents, through the protobuf wire format, decode to the tensors encoded."""
    request = InferRequest([], parameters={"binary_data_output": not typed})
    out = codec.encode_infer_response(response(tensors), request)
    msg = pb.ModelInferRequest(model_name="m", id=out.id)
    for tensor in out.outputs:
        msg.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape, contents=tensor.contents)
    msg.raw_input_contents.extend(out.raw_output_contents)
    decoded = codec.decode_infer_request(pb.ModelInferRequest.FromString(msg.SerializeToString()))
    for (datatype, array), tensor in zip(tensors, decoded.inputs, strict=True):
        same(array, tensor.data, datatype, tensor.datatype)


@CI
@given(arrays(json_safe=True), st.booleans())
def test_tfserving_round_trip(tensor: tuple[str, np.ndarray], rows: bool) -> None:
    """A predict response's value, sent back as the request of a model with that input's datatype.

    Nested JSON lists cannot say how long the dimensions after an empty one are, so an empty
    tensor only has to come back empty. Row format needs a batch: rank >= 1, at least one row."""
    datatype, array = tensor
    if rows and (array.ndim == 0 or len(array) == 0):
        rows = False
    doc = orjson.loads(tfs.encode_predict_response(response([tensor]), rows))
    value = doc["predictions"] if rows else doc["outputs"]
    signature = Signature(inputs=(TensorSpec("t0", datatype, (-1,) * array.ndim),), outputs=())
    request, used_rows = tfs.decode_predict_request(orjson.dumps({"instances" if rows else "inputs": value}), signature)
    assert used_rows is rows
    got = request.inputs[0]
    if array.size == 0:
        assert got.data.size == 0 and got.datatype == datatype
    else:
        same(array, got.data, datatype, got.datatype)


@CI
@given(arrays(json_safe=False, datatypes=["BYTES"]))
def test_tfserving_round_trip_binary_strings(tensor: tuple[str, np.ndarray]) -> None:
    """Bytes that are not UTF-8 travel as ``{"b64": ...}`` and come back as the same bytes."""
    datatype, array = tensor
    doc = orjson.loads(tfs.encode_predict_response(response([tensor]), rows=False))
    signature = Signature(inputs=(TensorSpec("t0", datatype, (-1,) * array.ndim),), outputs=())
    request, _ = tfs.decode_predict_request(orjson.dumps({"inputs": doc["outputs"]}), signature)
    if array.size:
        same(array, request.inputs[0].data, datatype, request.inputs[0].datatype)


# --- arbitrary input: success or a client error --------------------------------------------


def client_error_or_success(decode: Any, *args: Any) -> Any:
    try:
        return decode(*args)
    except ModelServeError as exc:
        error = exc
    assert http_status(error.code) < 500, f"{type(error).__name__} ({error.code}) is not a client error: {error}"
    return None


# JSON values, from anything to shapes close to a v2 request, so that decoders get past the first checks
SCALARS = st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | st.text(max_size=6)
JSON = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=10,
)
NAMES = st.sampled_from(["x", "", "t0"]) | JSON
DIMS = st.lists(st.integers(-2, 3) | st.sampled_from([2**31, 2**62, 2**63 - 1]) | JSON, max_size=5) | JSON
DATATYPE_VALUES = st.sampled_from([*DATATYPES, "BF16", "FP8", "bytes"]) | JSON
DATA = (
    st.lists(st.integers(-300, 300) | st.floats() | st.booleans() | st.text(max_size=3), max_size=8)
    | st.lists(st.lists(st.integers(-3, 3) | st.floats(-2, 2), max_size=3), max_size=3)
    | st.lists(st.dictionaries(st.sampled_from(["b64", "x"]), st.text(max_size=8), max_size=2), max_size=3)
    | JSON
)
PARAMETERS = (
    st.fixed_dictionaries(
        {}, optional={"binary_data_size": st.integers(-1, 40) | JSON, "binary_data": JSON, "content_type": JSON}
    )
    | JSON
)
TENSOR = st.fixed_dictionaries(
    {"name": NAMES},
    optional={"datatype": DATATYPE_VALUES, "shape": DIMS, "data": DATA, "parameters": PARAMETERS},
)
REQUEST = st.fixed_dictionaries(
    {"inputs": st.lists(TENSOR, max_size=3) | JSON},
    optional={
        "id": JSON,
        "parameters": PARAMETERS,
        "outputs": st.lists(st.fixed_dictionaries({"name": NAMES}, optional={"parameters": PARAMETERS})) | JSON,
    },
)


def _json(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # integers past 64 bits: the raw text is still a fine fuzz input
        return repr(value).encode()


@CI
@given(st.binary(max_size=200), st.integers(0, 220) | st.none())
def test_v2_rest_arbitrary_bytes(body: bytes, json_length: int | None) -> None:
    if json_length is not None:
        json_length = min(json_length, len(body))
    client_error_or_success(rest.decode_infer_request, body, json_length)
    client_error_or_success(rest.decode_index_request, body)
    client_error_or_success(rest.decode_control_parameters, body)


@CI
@given(REQUEST | JSON, st.binary(max_size=64))
def test_v2_rest_arbitrary_json(doc: object, blobs: bytes) -> None:
    """Request-shaped JSON, plain and followed by binary data; index and load/unload bodies too."""
    head = _json(doc)
    client_error_or_success(rest.decode_infer_request, head)
    client_error_or_success(rest.decode_infer_request, head + blobs, len(head))
    client_error_or_success(rest.decode_index_request, head)
    client_error_or_success(rest.decode_control_parameters, head)


SPECS = st.lists(
    st.builds(TensorSpec, st.sampled_from(["x", "y", "b64"]), st.sampled_from(list(DATATYPES)), st.just((-1,))),
    min_size=1,
    max_size=2,
    unique_by=lambda s: s.name,
)
TFS_REQUEST = st.fixed_dictionaries(
    {},
    optional={
        "signature_name": st.sampled_from(["", "serving_default", "other"]) | JSON,
        "instances": DATA | st.lists(st.dictionaries(st.sampled_from(["x", "y", "z"]), DATA, max_size=2), max_size=3),
        "inputs": DATA | st.dictionaries(st.sampled_from(["x", "y", "b64"]), DATA, max_size=3),
    },
)


@CI
@given(TFS_REQUEST | JSON | st.binary(max_size=100), SPECS)
def test_tfserving_arbitrary_input(doc: object, specs: list[TensorSpec]) -> None:
    body = doc if isinstance(doc, bytes) else _json(doc)
    client_error_or_success(tfs.decode_predict_request, body, Signature(inputs=tuple(specs), outputs=()))


PARAMETER = st.one_of(
    st.builds(pb.InferParameter),  # no value set
    st.builds(pb.InferParameter, bool_param=st.booleans()),
    st.builds(pb.InferParameter, int64_param=st.integers(-(2**63), 2**63 - 1)),
    st.builds(pb.InferParameter, string_param=st.text(max_size=4)),
    st.builds(pb.InferParameter, double_param=st.floats()),
    st.builds(pb.InferParameter, uint64_param=st.integers(0, 2**64 - 1)),
)
CONTENTS = st.fixed_dictionaries(
    {},
    optional={
        "bool_contents": st.lists(st.booleans(), max_size=6),
        "int_contents": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6),
        "int64_contents": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6),
        "uint_contents": st.lists(st.integers(0, 2**32 - 1), max_size=6),
        "uint64_contents": st.lists(st.integers(0, 2**64 - 1), max_size=6),
        "fp32_contents": st.lists(st.floats(width=32), max_size=6),
        "fp64_contents": st.lists(st.floats(), max_size=6),
        "bytes_contents": st.lists(st.binary(max_size=4), max_size=6),
    },
).map(lambda fields: pb.InferTensorContents(**fields))


@st.composite
def grpc_requests(draw: st.DrawFn) -> Any:
    msg = pb.ModelInferRequest(id=draw(st.text(max_size=3)))
    for _ in range(draw(st.integers(0, 3))):
        tensor = msg.inputs.add(
            name=draw(st.sampled_from(["x", "", "y"])),
            datatype=draw(st.sampled_from([*DATATYPES, "BF16", "", "fp32"])),
            shape=draw(st.lists(st.integers(-2, 4) | st.sampled_from([2**40, 2**62, 2**63 - 1]), max_size=5)),
        )
        if draw(st.booleans()):
            tensor.contents.CopyFrom(draw(CONTENTS))
        for key, value in draw(st.dictionaries(st.text(max_size=3), PARAMETER, max_size=2)).items():
            tensor.parameters[key].CopyFrom(value)
    msg.raw_input_contents.extend(draw(st.lists(st.binary(max_size=24), max_size=3)))
    for name in draw(st.lists(st.sampled_from(["a", ""]), max_size=2)):
        out = msg.outputs.add(name=name)
        for key, value in draw(st.dictionaries(st.text(max_size=3), PARAMETER, max_size=1)).items():
            out.parameters[key].CopyFrom(value)
    for key, value in draw(st.dictionaries(st.text(max_size=3), PARAMETER, max_size=2)).items():
        msg.parameters[key].CopyFrom(value)
    return msg


@CI
@given(grpc_requests())
def test_grpc_arbitrary_message(msg: Any) -> None:
    client_error_or_success(codec.decode_infer_request, msg)


@CI
@given(st.binary(max_size=200))
def test_grpc_arbitrary_wire_bytes(data: bytes) -> None:
    """Bytes that happen to parse as a ModelInferRequest (gRPC rejects the others before us)."""
    try:
        msg = pb.ModelInferRequest.FromString(data)
    except DecodeError:  # not a message: gRPC refuses it before our decoder sees it
        return
    client_error_or_success(codec.decode_infer_request, msg)


@CI
@given(st.sampled_from(list(DATATYPES)), DIMS.filter(lambda d: isinstance(d, list)), st.binary(max_size=64))
def test_binary_decode_tensor_arbitrary(datatype: str, shape: list[Any], blob: bytes) -> None:
    """The shared binary tensor decoder, for shapes that passed the JSON shape check."""
    if not all(type(d) is int and d >= 0 for d in shape):
        return
    client_error_or_success(binary.decode_tensor, "x", datatype, tuple(shape), memoryview(blob))


@CI
@given(st.text(max_size=24) | st.integers(-5, 2**70).map(str), st.integers(0, 1000))
def test_header_length_arbitrary(raw: str, body_size: int) -> None:
    got = client_error_or_success(binary.header_length, raw, body_size)
    assert got is None or 0 <= got <= body_size


# --- lying lengths in the binary extension -----------------------------------------------------


LIES = st.integers(-3, 300) | st.sampled_from([2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**64 - 1])


def _peak(decode: Any, *args: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = client_error_or_success(decode, *args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@SMALL
@given(st.lists(arrays(json_safe=False), min_size=1, max_size=3), st.data())
def test_lying_lengths_stay_inside_the_body(tensors: list[tuple[str, np.ndarray]], data: st.DataObject) -> None:
    """Any binary_data_size, header length or BYTES length prefix: the decoded tensors come from
    the body's bytes only, and decoding allocates at most a small multiple of the body."""
    request = InferRequest([], parameters={"binary_data_output": True})
    body, json_length = _as_request_body(*rest.encode_infer_response(response(tensors), request))
    assert json_length is not None
    head = orjson.loads(body[:json_length])
    for tensor in head["inputs"]:
        if data.draw(st.booleans()):
            tensor["parameters"]["binary_data_size"] = data.draw(LIES)
    new_head = orjson.dumps(head)
    blobs = bytearray(body[json_length:])
    if blobs and data.draw(st.booleans()):  # a lying BYTES length prefix, or any other overwrite
        at = data.draw(st.integers(0, len(blobs) - 1))
        blobs[at : at + 4] = struct.pack("<I", data.draw(LIES.filter(lambda n: 0 <= n < 2**32)))
    body = new_head + bytes(blobs)
    json_length = data.draw(st.sampled_from([len(new_head)]) | st.integers(0, len(body)))
    decoded, peak = _peak(rest.decode_infer_request, body, json_length)
    assert peak <= 16 * len(body) + (256 << 10), f"decoding a {len(body)}-byte body allocated {peak} bytes"
    if decoded is not None:
        carried = sum(t.data.nbytes if t.datatype != "BYTES" else sum(map(len, t.data.ravel())) for t in decoded.inputs)
        assert carried <= len(body) - json_length


@SMALL
@given(LIES.map(str) | st.text(max_size=8), st.binary(max_size=64))
def test_lying_header_length(raw: str, body: bytes) -> None:
    """An Inference-Header-Content-Length beyond the body is refused before anything is sliced."""
    length = client_error_or_success(binary.header_length, raw, len(body))
    if length is not None:
        client_error_or_success(rest.decode_infer_request, body, length)


@pytest.mark.parametrize("size", [2**32 - 1, 2**31])
def test_bytes_prefix_larger_than_the_body(size: int) -> None:
    """A BYTES length prefix of ~4 GiB in an 8-byte blob: refused without allocating it."""
    blob = memoryview(struct.pack("<I", size) + b"abcd")
    decoded, peak = _peak(binary.decode_tensor, "x", "BYTES", (1,), blob)
    assert decoded is None and peak < 1 << 20


# --- regressions found by the properties above ---------------------------------------------------


@pytest.mark.parametrize("datatype", ["FP16", "FP32"])
def test_json_round_trip_of_the_largest_float(datatype: str) -> None:
    """orjson writes FP32's max as "3.4028235e+38", above max as a float64; it must still fit."""
    top = np.finfo(DATATYPES[datatype]).max
    array = np.array([top, -top], dtype=DATATYPES[datatype])
    tensor = {"name": "x", "datatype": datatype, "shape": [2], "data": rest.json_data("x", array)}
    decoded = rest.decode_infer_request(rest.dumps({"inputs": [tensor]}))
    same(array, decoded.inputs[0].data, datatype, decoded.inputs[0].datatype)
    signature = Signature(inputs=(TensorSpec("x", datatype, (-1,)),), outputs=())
    predictions = orjson.loads(tfs.encode_predict_response(response([(datatype, array)]), True))["predictions"]
    request, _ = tfs.decode_predict_request(orjson.dumps({"instances": predictions}), signature)
    same(array, request.inputs[0].data, datatype, request.inputs[0].datatype)


def test_tfserving_scalar_output_is_a_json_scalar() -> None:
    """A rank-0 output answers a JSON number, not a one-element list (and decodes to rank 0)."""
    body = tfs.encode_predict_response(response([("FP64", np.array(2.5))]), rows=False)
    assert orjson.loads(body) == {"outputs": 2.5}
