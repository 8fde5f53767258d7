"""Tracing: a server span per inference request with decode/queue/runtime/encode children, the
caller's W3C traceparent honoured and the trace id returned, over REST and gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from modelserve import testing
from modelserve.protocol.v2.grpc import messages as pb
from tests.fixtures.models import _save_onnx, adder_model

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
GOOD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
# an inference graph calling the adder twice, one call after the other
TWICE = """\
inputs: [{name: x, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: y, from: second.y}]
nodes:
  - {name: first, kind: model, model: adder, inputs: {x: x}}
  - {name: second, kind: model, model: adder, inputs: {x: first.y}}
"""


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[testing.run, InMemorySpanExporter]]:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")  # the test's exporter only
    _save_onnx(tmp_path / "adder" / "1" / "model.onnx", adder_model(1.0))
    (tmp_path / "twice").mkdir()
    (tmp_path / "twice" / "graph.yaml").write_text(TWICE)
    srv = testing.run(tmp_path, tracing=True)
    exporter = InMemorySpanExporter()
    assert srv.server.tracing is not None
    srv.server.tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
    with srv:
        yield srv, exporter


def _tree(spans: tuple[ReadableSpan, ...], root: ReadableSpan) -> list[str]:
    return sorted(s.name for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id)


def test_rest_request_joins_the_callers_trace(traced: tuple[testing.run, InMemorySpanExporter]) -> None:
    srv, exporter = traced
    response = httpx.post(f"{srv.http_url}/v2/models/adder/infer", json=GOOD, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    assert response.headers["x-trace-id"] == TRACE_ID
    assert response.headers["traceparent"].startswith(f"00-{TRACE_ID}-")
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.name == "POST /v2/models/{model}/infer"
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_ID
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{server.context.span_id:016x}-01"
    assert _tree(spans, server) == ["decode", "encode", "queue", "runtime"]
    runtime = next(s for s in spans if s.name == "runtime")
    assert runtime.attributes is not None and runtime.attributes["modelserve.batch_rows"] == 1
    assert server.attributes is not None and server.attributes["modelserve.version"] == "1"
    assert server.attributes["http.response.status_code"] == 200
    queue = next(s for s in spans if s.name == "queue")
    assert queue.end_time is not None and runtime.start_time is not None and queue.end_time <= runtime.start_time


def test_grpc_request_returns_the_trace_in_trailers(traced: tuple[testing.run, InMemorySpanExporter]) -> None:
    srv, exporter = traced
    msg = pb.ModelInferRequest(model_name="adder")
    tensor = msg.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    tensor.contents.fp32_contents.extend([1, 2, 3])
    with grpc.insecure_channel(srv.grpc_target) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        _, call = infer.with_call(msg.SerializeToString(), metadata=(("traceparent", TRACEPARENT),), timeout=10)
    trailers = dict(call.trailing_metadata() or ())
    assert trailers["x-trace-id"] == TRACE_ID
    (server,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.name == "inference.GRPCInferenceService/ModelInfer"
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == "OK"


def test_a_request_without_traceparent_starts_a_trace_and_errors_are_marked(
    traced: tuple[testing.run, InMemorySpanExporter],
) -> None:
    srv, exporter = traced
    bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    response = httpx.post(f"{srv.http_url}/v2/models/adder/infer", json=bad)
    assert response.status_code == 400
    (server,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert response.headers["x-trace-id"] == f"{server.context.trace_id:032x}"  # the error carries it
    assert server.parent is None  # a new trace
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 400
    assert server.status.status_code is not StatusCode.ERROR  # the client's mistake, not the server's


def test_a_grpc_error_carries_the_trace_id(traced: tuple[testing.run, InMemorySpanExporter]) -> None:
    srv, _ = traced
    msg = pb.ModelInferRequest(model_name="adder")
    tensor = msg.inputs.add(name="x", datatype="FP32", shape=[1, 2])  # wrong shape
    tensor.contents.fp32_contents.extend([1, 2])
    with grpc.insecure_channel(srv.grpc_target) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            infer(msg.SerializeToString(), metadata=(("traceparent", TRACEPARENT),), timeout=10)
    error = info.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert dict(error.trailing_metadata() or ())["x-trace-id"] == TRACE_ID  # type: ignore[attr-defined]


def test_tracing_is_off_by_default(tmp_path: Path) -> None:
    _save_onnx(tmp_path / "adder" / "1" / "model.onnx", adder_model(1.0))
    with testing.run(tmp_path) as srv:
        assert srv.server.tracing is None
        response = httpx.post(f"{srv.http_url}/v2/models/adder/infer", json=GOOD, headers={"traceparent": TRACEPARENT})
        assert "traceparent" not in response.headers and "x-trace-id" not in response.headers


@pytest.mark.parametrize(
    ("sampler", "traceparent", "traced"),
    [
        ("always_off", None, False),
        ("always_off", TRACEPARENT, True),  # parent-based: the caller sampled it
        ("always_on", f"00-{TRACE_ID}-{PARENT_ID}-00", False),  # the caller did not
        ("parentbased_traceidratio", None, True),  # OTEL_TRACES_SAMPLER_ARG=1
    ],
)
def test_sampling_is_decided_before_any_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sampler: str, traceparent: str | None, traced: bool
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1")
    _save_onnx(tmp_path / "adder" / "1" / "model.onnx", adder_model(1.0))
    srv = testing.run(tmp_path, tracing=True)
    exporter = InMemorySpanExporter()
    assert srv.server.tracing is not None
    srv.server.tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
    with srv:
        headers = {"traceparent": traceparent} if traceparent else {}
        response = httpx.post(f"{srv.http_url}/v2/models/adder/infer", json=GOOD, headers=headers)
    assert response.status_code == 200
    assert ("x-trace-id" in response.headers) is traced
    assert bool(exporter.get_finished_spans()) is traced


def test_a_graph_request_has_a_span_per_node(traced: tuple[testing.run, InMemorySpanExporter]) -> None:
    srv, exporter = traced
    response = httpx.post(f"{srv.http_url}/v2/models/twice/infer", json=GOOD, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [3, 4, 5]
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER and s.attributes["modelserve.model"] == "twice"]
    assert _tree(spans, server) == ["decode", "encode", "node first", "node second"]
    first, second = (next(s for s in spans if s.name == f"node {n}") for n in ("first", "second"))
    assert first.end_time is not None and second.start_time is not None
    assert first.end_time <= second.start_time  # second waited for first's output
