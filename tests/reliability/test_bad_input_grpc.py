"""Every malformed gRPC request gets the right status and a message naming the problem; the server keeps serving.

The gRPC counterpart of test_bad_input.py. Requests travel as raw bytes through
``channel.unary_unary(path)`` without serializers, so malformed protobuf reaches the server exactly
as sent. JSON-only cases (ragged or deep nesting, strings or nulls among numbers, an ``id`` that is
not a string, the TF Serving API) have no protobuf form; invalid UTF-8, deep unknown groups and
truncated messages stand in for malformed JSON.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from modelserve import testing
from modelserve.protocol.v2 import binary
from modelserve.protocol.v2.grpc import messages as pb
from tests.conftest import IRIS_ROW
from tests.fixtures.models import identity_batch

SERVICE = "/inference.GRPCInferenceService/"
INFER = SERVICE + "ModelInfer"
IRIS_RAW = np.array([IRIS_ROW], dtype=np.float32).tobytes()
Code = grpc.StatusCode


def _input(name: str = "input", datatype: str = "FP32", shape: tuple[int, ...] = (1, 4), **contents: Any) -> dict:
    """One InferInputTensor; ``contents`` maps InferTensorContents fields to their values."""
    return {"name": name, "datatype": datatype, "shape": list(shape), "contents": contents}


IRIS_INPUT = _input(fp32_contents=IRIS_ROW)


def _request(
    *inputs: dict,
    model: str = "iris",
    version: str = "",
    raw: list[bytes] | None = None,
    outputs: tuple[str, ...] = (),
    request_id: str = "",
) -> bytes:
    """A serialized ModelInferRequest (the iris row, typed, when no input is given)."""
    msg = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for spec in inputs or (IRIS_INPUT,):
        tensor = msg.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=spec["shape"])
        for field, values in spec["contents"].items():
            getattr(tensor.contents, field).extend(values)
    msg.raw_input_contents.extend(raw or [])
    for name in outputs:
        msg.outputs.add(name=name)
    return bytes(msg.SerializeToString())


def _bytes_input(blob: bytes) -> bytes:
    """Identity's in_BYTES alone, raw; decoding fails before the missing inputs are noticed."""
    return _request(_input("in_BYTES", "BYTES", (1, 2)), model="identity", raw=[blob])


def _identity_raw(**override: bytes) -> bytes:
    """All 13 identity inputs raw, one [1, 2] row each, with some blobs replaced."""
    msg = pb.ModelInferRequest(model_name="identity")
    for dt, array in identity_batch(rows=1).items():
        msg.inputs.add(name=f"in_{dt}", datatype=dt, shape=[1, 2])
        msg.raw_input_contents.append(override.get(dt, binary.encode_tensor(array)))
    return bytes(msg.SerializeToString())


def _with_empty_parameter() -> bytes:
    msg = pb.ModelInferRequest.FromString(_request())
    msg.parameters.get_or_create("x")  # present in the map, but no value in its oneof
    return bytes(msg.SerializeToString())


def _prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _case(case_id: str, method: str, body: bytes, code: Code, *words: str) -> Any:
    return pytest.param(method, body, code, list(words), id=case_id)


GOOD = _request()
NAME = b"\x0a\x04iris"  # field 1 (model_name) = "iris"

CASES = [
    # -- malformed protobuf: INVALID_ARGUMENT with protobuf's reason, never INTERNAL -----------------------
    _case("malformed-garbage", INFER, b"\xff\xff\xff", Code.INVALID_ARGUMENT, "malformed ModelInferRequest"),
    _case("malformed-truncated", INFER, GOOD[:-3], Code.INVALID_ARGUMENT, "malformed ModelInferRequest"),
    _case("malformed-length-past-end", INFER, b"\x0a\x64iris", Code.INVALID_ARGUMENT, "malformed ModelInferRequest"),
    _case("malformed-wire-type-7", INFER, NAME + b"\x0f", Code.INVALID_ARGUMENT, "malformed ModelInferRequest"),
    _case("malformed-field-number-0", INFER, b"\x00\x01", Code.INVALID_ARGUMENT, "malformed ModelInferRequest"),
    _case("malformed-utf8-name", INFER, b"\x0a\x02\xff\xfe", Code.INVALID_ARGUMENT, "malformed ModelInferRequest"),
    _case("malformed-utf8-id", INFER, NAME + b"\x1a\x02\xff\xfe", Code.INVALID_ARGUMENT, "malformed ModelInferRequest"),
    _case(
        "malformed-deep-groups",  # field 127 start-group, nested 100,000 deep
        INFER,
        NAME + b"\xfb\x07" * 100_000,
        Code.INVALID_ARGUMENT,
        "malformed ModelInferRequest",
    ),
    _case(
        "malformed-server-live", SERVICE + "ServerLive", b"\xff", Code.INVALID_ARGUMENT, "malformed ServerLiveRequest"
    ),
    # -- request structure --------------------------------------------------------------------------------
    _case("empty-message", INFER, b"", Code.INVALID_ARGUMENT, "model name is empty"),
    _case("empty-model-name", INFER, _request(model=""), Code.INVALID_ARGUMENT, "model name is empty"),
    _case("no-inputs", INFER, NAME, Code.INVALID_ARGUMENT, "'inputs'"),
    _case("empty-input-name", INFER, _request(_input("", fp32_contents=IRIS_ROW)), Code.INVALID_ARGUMENT, "inputs[0]"),
    _case("empty-output-name", INFER, _request(outputs=("",)), Code.INVALID_ARGUMENT, "outputs[0]", "'name'"),
    _case("parameter-without-value", INFER, _with_empty_parameter(), Code.INVALID_ARGUMENT, "'x'", "no value"),
    # -- datatype and shape -------------------------------------------------------------------------------
    _case(
        "unknown-datatype",
        INFER,
        _request(_input(datatype="FLOAT7"), raw=[IRIS_RAW]),
        Code.INVALID_ARGUMENT,
        "'input'",
        "FLOAT7",
    ),
    _case(
        "empty-datatype",
        INFER,
        _request(_input(datatype="", fp32_contents=IRIS_ROW)),
        Code.INVALID_ARGUMENT,
        "'input'",
        "unknown datatype ''",
    ),
    _case(
        "datatype-mismatch",
        INFER,
        _request(_input(datatype="INT32", int_contents=[5, 3, 1, 0])),
        Code.INVALID_ARGUMENT,
        "INT32",
        "FP32",
    ),
    _case(
        "shape-mismatch",
        INFER,
        _request(_input(shape=(2, 2), fp32_contents=IRIS_ROW)),
        Code.INVALID_ARGUMENT,
        "[2, 2]",
        "[-1, 4]",
    ),
    _case(
        "rank-mismatch",
        INFER,
        _request(_input(shape=(4,), fp32_contents=IRIS_ROW)),
        Code.INVALID_ARGUMENT,
        "[4]",
        "[-1, 4]",
    ),
    _case(
        "negative-dim",
        INFER,
        _request(_input(shape=(-1, 4), fp32_contents=IRIS_ROW)),
        Code.INVALID_ARGUMENT,
        "non-negative",
        "[-1, 4]",
    ),
    _case(
        "negative-dim-raw",
        INFER,
        _request(_input(shape=(1, -4)), raw=[IRIS_RAW]),
        Code.INVALID_ARGUMENT,
        "non-negative",
        "[1, -4]",
    ),
    _case(
        "rank-33",
        INFER,
        _request(_input(shape=(1,) * 33, fp32_contents=[1.0])),
        Code.INVALID_ARGUMENT,
        "'input'",
        "at most 32",
    ),
    _case(
        "overflowing-dims",
        INFER,
        _request(_input(shape=(16, 2**60 + 2), fp32_contents=IRIS_ROW)),
        Code.RESOURCE_EXHAUSTED,
        "[16, 1152921504606846978]",
        "max_tensor_elements",
    ),
    _case(
        "overflowing-dims-raw",
        INFER,
        _request(_input(shape=(16, 2**60 + 2)), raw=[IRIS_RAW]),
        Code.RESOURCE_EXHAUSTED,
        "[16, 1152921504606846978]",
        "max_tensor_elements",
    ),
    _case(
        "zero-elements-huge-shape",
        INFER,
        _request(_input(shape=(0, 2**62))),
        Code.INVALID_ARGUMENT,
        "[0, 4611686018427387904]",
        "too large",
    ),
    # -- typed contents -----------------------------------------------------------------------------------
    _case(
        "missing-data",
        INFER,
        _request(_input()),
        Code.INVALID_ARGUMENT,
        "'input'",
        "holds 0 values",
        "needs 4",
    ),
    _case(
        "typed-count-mismatch",
        INFER,
        _request(_input(fp32_contents=IRIS_ROW[:3])),
        Code.INVALID_ARGUMENT,
        "holds 3 values",
        "[1, 4] needs 4",
    ),
    _case(
        "typed-fp32-in-int-contents",
        INFER,
        _request(_input(int_contents=[5, 3, 1, 0])),
        Code.INVALID_ARGUMENT,
        "'input'",
        "contents.int_contents",
        "expected fp32_contents",
    ),
    _case(
        "typed-fp32-in-fp64-contents",
        INFER,
        _request(_input(fp64_contents=IRIS_ROW)),
        Code.INVALID_ARGUMENT,
        "contents.fp64_contents",
        "expected fp32_contents",
    ),
    _case(
        "typed-two-fields",
        INFER,
        _request(_input(fp32_contents=IRIS_ROW, fp64_contents=IRIS_ROW)),
        Code.INVALID_ARGUMENT,
        "contents.fp64_contents",
        "expected fp32_contents",
    ),
    _case(
        "typed-bytes-in-fp32-contents",
        INFER,
        _request(_input("in_BYTES", "BYTES", (1, 2), fp32_contents=[1.0, 2.0]), model="identity"),
        Code.INVALID_ARGUMENT,
        "'in_BYTES'",
        "expected bytes_contents",
    ),
    _case(
        "typed-fp16",
        INFER,
        _request(_input("in_FP16", "FP16", (1, 2), fp32_contents=[1.0, 2.0]), model="identity"),
        Code.INVALID_ARGUMENT,
        "'in_FP16'",
        "raw_input_contents",
    ),
    _case(
        "typed-int8-out-of-range",
        INFER,
        _request(_input("in_INT8", "INT8", (1, 2), int_contents=[1, 300]), model="identity"),
        Code.INVALID_ARGUMENT,
        "'in_INT8'",
        "INT8 [-128, 127]",
        "300",
    ),
    _case(
        "typed-uint8-out-of-range",
        INFER,
        _request(_input("in_UINT8", "UINT8", (1, 2), uint_contents=[1, 256]), model="identity"),
        Code.INVALID_ARGUMENT,
        "'in_UINT8'",
        "UINT8 [0, 255]",
        "256",
    ),
    _case(
        "typed-int16-out-of-range",
        INFER,
        _request(_input("in_INT16", "INT16", (1, 2), int_contents=[-40000, 1]), model="identity"),
        Code.INVALID_ARGUMENT,
        "'in_INT16'",
        "INT16 [-32768, 32767]",
        "-40000",
    ),
    # -- raw_input_contents -------------------------------------------------------------------------------
    _case(
        "raw-more-entries-than-inputs",
        INFER,
        _request(_input(), raw=[IRIS_RAW, IRIS_RAW]),
        Code.INVALID_ARGUMENT,
        "raw_input_contents has 2 entries",
        "1 inputs",
    ),
    _case(
        "raw-fewer-entries-than-inputs",
        INFER,
        _request(
            _input("in_FP32", shape=(1, 2)), _input("in_INT32", "INT32", (1, 2)), model="identity", raw=[b"\0" * 8]
        ),
        Code.INVALID_ARGUMENT,
        "raw_input_contents has 1 entries",
        "2 inputs",
    ),
    _case(
        "raw-size-not-a-multiple",
        INFER,
        _request(_input(), raw=[IRIS_RAW[:15]]),
        Code.INVALID_ARGUMENT,
        "'input'",
        "15 bytes",
        "needs 16",
    ),
    _case(
        "raw-size-too-big",
        INFER,
        _request(_input(), raw=[IRIS_RAW * 2]),
        Code.INVALID_ARGUMENT,
        "32 bytes",
        "needs 16",
    ),
    _case("raw-size-zero", INFER, _request(_input(), raw=[b""]), Code.INVALID_ARGUMENT, "0 bytes", "needs 16"),
    _case(
        "raw-fp16-odd-size",
        INFER,
        _request(_input("in_FP16", "FP16", (1, 2)), model="identity", raw=[b"abc"]),
        Code.INVALID_ARGUMENT,
        "'in_FP16'",
        "3 bytes",
        "needs 4",
    ),
    _case(
        "raw-and-typed",
        INFER,
        _request(IRIS_INPUT, raw=[IRIS_RAW]),
        Code.INVALID_ARGUMENT,
        "'input'",
        "raw_input_contents",
        "contents.fp32_contents",
    ),
    _case(
        "raw-bytes-length-past-end",
        INFER,
        _bytes_input(struct.pack("<I", 100) + b"ab"),
        Code.INVALID_ARGUMENT,
        "'in_BYTES'",
        "says 100 bytes",
    ),
    _case(
        "raw-bytes-huge-length",
        INFER,
        _bytes_input(struct.pack("<I", 2**32 - 1) + b"ab"),
        Code.INVALID_ARGUMENT,
        "'in_BYTES'",
        "says 4294967295 bytes",
    ),
    _case(
        "raw-bytes-truncated-prefix",
        INFER,
        _bytes_input(_prefixed(b"a") + b"\x01\x00"),
        Code.INVALID_ARGUMENT,
        "'in_BYTES'",
        "element 1",
        "truncated length prefix",
    ),
    _case(
        "raw-bytes-count-mismatch",
        INFER,
        _bytes_input(_prefixed(b"a")),
        Code.INVALID_ARGUMENT,
        "'in_BYTES'",
        "1 BYTES elements",
        "needs 2",
    ),
    _case(
        "raw-bytes-not-utf8-for-onnx",
        INFER,
        _identity_raw(BYTES=_prefixed(b"\xff", b"a")),
        Code.INVALID_ARGUMENT,
        "'in_BYTES'",
        "UTF-8",
    ),
    # -- inputs and outputs against the signature ---------------------------------------------------------
    _case(
        "unknown-input",
        INFER,
        _request(_input("features", fp32_contents=IRIS_ROW)),
        Code.INVALID_ARGUMENT,
        "'features'",
        "['input']",
    ),
    _case(
        "missing-input",
        INFER,
        _request(_input("in_FP32", shape=(1, 2), fp32_contents=[1.0, 2.0]), model="identity"),
        Code.INVALID_ARGUMENT,
        "needs input(s)",
        "'in_BOOL'",
    ),
    _case(
        "duplicate-input",
        INFER,
        _request(IRIS_INPUT, IRIS_INPUT),
        Code.INVALID_ARGUMENT,
        "'input'",
        "more than once",
    ),
    _case(
        "unknown-output",
        INFER,
        _request(outputs=("nope",)),
        Code.INVALID_ARGUMENT,
        "'nope'",
        "['label', 'probabilities']",
    ),
    # -- models and versions ------------------------------------------------------------------------------
    _case("unknown-model", INFER, _request(model="nope"), Code.NOT_FOUND, "'nope'"),
    _case("path-like-model-name", INFER, _request(model="../iris"), Code.NOT_FOUND, "'../iris'"),
    _case("unknown-version", INFER, _request(version="9"), Code.NOT_FOUND, "version 9"),
    *(
        _case(f"bad-version-{label}", INFER, _request(version=v), Code.INVALID_ARGUMENT, "positive integer", repr(v))
        for label, v in [
            ("latest", "latest"),
            ("leading-zero", "01"),
            ("abc", "abc"),
            ("negative", "-1"),
            ("zero", "0"),
            ("space", " 1"),
            ("decimal", "1.0"),
            ("superscript", "\u00b2"),
            ("19-digits", "1" * 19),
        ]
    ),
    _case("failed-model", INFER, _request(model="broken"), Code.UNAVAILABLE, "'broken'", "FAILED", "model.onnx"),
    _case("failed-model-pickled", INFER, _request(model="pickled"), Code.UNAVAILABLE, "FAILED", "trusted"),
    _case("model-without-versions", INFER, _request(model="empty"), Code.UNAVAILABLE, "'empty'", "no version"),
    _case(
        "metadata-without-versions",
        SERVICE + "ModelMetadata",
        pb.ModelMetadataRequest(name="empty").SerializeToString(),
        Code.UNAVAILABLE,
        "no version",
    ),
    _case(
        "metadata-unknown-model",
        SERVICE + "ModelMetadata",
        pb.ModelMetadataRequest(name="nope").SerializeToString(),
        Code.NOT_FOUND,
        "'nope'",
    ),
    _case(
        "metadata-unknown-version",
        SERVICE + "ModelMetadata",
        pb.ModelMetadataRequest(name="iris", version="9").SerializeToString(),
        Code.NOT_FOUND,
        "version 9",
    ),
    _case(
        "metadata-bad-version",
        SERVICE + "ModelMetadata",
        pb.ModelMetadataRequest(name="iris", version="abc").SerializeToString(),
        Code.INVALID_ARGUMENT,
        "'abc'",
    ),
    _case(
        "ready-bad-version",
        SERVICE + "ModelReady",
        pb.ModelReadyRequest(name="iris", version="01").SerializeToString(),
        Code.INVALID_ARGUMENT,
        "'01'",
    ),
    _case(
        "ready-empty-name",
        SERVICE + "ModelReady",
        pb.ModelReadyRequest(name="").SerializeToString(),
        Code.INVALID_ARGUMENT,
        "model name is empty",
    ),
    _case("unknown-method", SERVICE + "Nope", b"", Code.UNIMPLEMENTED, "Method not found"),
    # -- the model itself fails ---------------------------------------------------------------------------
    _case(
        "runtime-error",
        INFER,
        _request(_input("x", shape=(3,), fp32_contents=[1.0, 2.0, 3.0]), model="reshaper"),
        Code.INTERNAL,
        "internal error",
        "request id",
    ),
]


@pytest.fixture
def channel(server: testing.run) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as ch:
        yield ch


def _status(channel: grpc.Channel, method: str, body: bytes, timeout: float = 30) -> tuple[Code, str]:
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(method)(body, timeout=timeout)
    return err.value.code(), err.value.details() or ""


def _assert_serving(channel: grpc.Channel) -> None:
    """ServerLive says live, and the iris row still gets its label."""
    live = pb.ServerLiveResponse.FromString(channel.unary_unary(SERVICE + "ServerLive")(b"", timeout=30))
    assert live.live
    response = pb.ModelInferResponse.FromString(channel.unary_unary(INFER)(GOOD, timeout=30))
    assert response.outputs[0].name == "label"
    assert np.frombuffer(response.raw_output_contents[0], dtype="<i8").tolist() == [0]


@pytest.mark.parametrize(("method", "body", "code", "words"), CASES)
def test_bad_request_gets_status_and_message(
    channel: grpc.Channel, method: str, body: bytes, code: Code, words: list[str]
) -> None:
    got, details = _status(channel, method, body)
    assert got is code, details
    for word in words:
        assert word in details
    _assert_serving(channel)


# 50,000 iris rows (800 kB raw): gRPC rounds deadlines to the millisecond, and this cannot go and
# come back within one, so a tiny timeout expires however fast the machine is
BIG = _request(_input(shape=(50_000, 4)), raw=[IRIS_RAW * 50_000])


@pytest.mark.parametrize(
    ("timeout", "body"), [(-1, GOOD), (0, BIG), (1e-9, BIG), (1e-6, BIG)], ids=["negative", "zero", "1ns", "1us"]
)
def test_deadline_passed_is_deadline_exceeded(channel: grpc.Channel, timeout: float, body: bytes) -> None:
    # the client or the server may notice first; either way the user sees DEADLINE_EXCEEDED
    code, details = _status(channel, INFER, body, timeout=timeout)
    assert code is Code.DEADLINE_EXCEEDED, details
    assert "deadline" in details.lower()
    _assert_serving(channel)
    assert len(pb.ModelInferResponse.FromString(channel.unary_unary(INFER)(BIG, timeout=30)).raw_output_contents) == 2


@pytest.fixture(scope="module")
def small_server(repo: Path) -> Iterator[testing.run]:
    with testing.run(repo, max_request_bytes=1024) as srv:
        yield srv


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_message_over_the_limit_is_resource_exhausted(
    small_server: testing.run, compression: grpc.Compression | None
) -> None:
    """Over max_request_bytes: RESOURCE_EXHAUSTED, also when it only grows past the limit once decompressed."""
    with grpc.insecure_channel(small_server.grpc_target, compression=compression) as ch:
        code, details = _status(ch, INFER, _request(request_id="x" * 100_000))
        assert code is Code.RESOURCE_EXHAUSTED, details
        assert "larger than max" in details
        _assert_serving(ch)


def test_stream_answers_each_bad_request_and_goes_on(channel: grpc.Channel) -> None:
    requests = [
        b"\xff\xff",
        _request(model="", request_id="s2"),
        _request(model="nope", request_id="s3"),
        _request(_input(int_contents=[5, 3, 1, 0]), request_id="s4"),
        _request(request_id="s5"),
    ]
    stream = channel.stream_stream(SERVICE + "ModelStreamInfer")
    replies = [pb.ModelStreamInferResponse.FromString(r) for r in stream(iter(requests), timeout=30)]
    expected = [
        ["malformed ModelInferRequest"],
        ["model name is empty"],
        ["'nope'", "not in the repository"],
        ["'input'", "contents.int_contents", "expected fp32_contents"],
    ]
    for reply, words in zip(replies, expected, strict=False):
        for word in words:
            assert word in reply.error_message
    assert [r.infer_response.id for r in replies[1:4]] == ["s2", "s3", "s4"]
    last = replies[4]
    assert not last.error_message and last.infer_response.id == "s5"
    assert np.frombuffer(last.infer_response.raw_output_contents[0], dtype="<i8").tolist() == [0]


def test_server_still_serves_after_the_table(channel: grpc.Channel) -> None:
    ready = pb.ServerReadyResponse.FromString(channel.unary_unary(SERVICE + "ServerReady")(b"", timeout=30))
    assert ready.ready
    _assert_serving(channel)
