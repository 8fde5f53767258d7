"""Each inference request at the transport edge: its outcome and latency go to the manager's
statistics (core/stats.py); when the access log is on, one structured record goes to the
``modelserve.access`` logger (request id, trace id, model, version, protocol, status, latency,
batch rows); when tracing is on (telemetry/tracing.py), a server span covers it, with ``decode``,
``queue``, ``runtime`` and ``encode`` children (an inference graph's: a ``node <name>`` child per
node instead of ``queue`` and ``runtime``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, TypeVar

from modelserve.core.batching import batch_rows, phases
from modelserve.core.manager import Handle, ModelManager
from modelserve.core.stats import VersionStats
from modelserve.errors import ModelServeError
from modelserve.monitoring.service import Monitoring
from modelserve.protocol.status import grpc_status, http_status
from modelserve.routing.graph import node_timings
from modelserve.telemetry import logs, payloads
from modelserve.telemetry.payloads import PayloadSink
from modelserve.telemetry.tracing import Tracing, epoch_ns, header_carrier
from modelserve.types import InferRequest, InferResponse

T = TypeVar("T")

REQUEST_ID_HEADER = "x-request-id"
TRACE_ID_HEADER = "x-trace-id"
VARIANT_HEADER = "x-model-variant"  # the variant a traffic policy chose (also in the v2 response parameters)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class Observer:
    def __init__(
        self,
        manager: ModelManager,
        access_log: bool,
        tracing: Tracing | None = None,
        payloads: PayloadSink | None = None,
        monitoring: Monitoring | None = None,
    ) -> None:
        self.manager = manager
        self.access_log = access_log
        self.tracing = tracing
        self.payloads = payloads
        self.monitoring = monitoring

    def start(
        self,
        protocol: str,
        name: str,
        request_id: str | None = None,
        headers: Iterable[tuple[Any, Any]] = (),
        route: str = "",
    ) -> Observed:
        """A request begins. ``request_id``: the client's (X-Request-ID), if it sent a usable one;
        ``headers`` (REST headers or gRPC metadata) may carry a W3C ``traceparent``; ``route``
        names the server span."""
        if request_id is not None and not _REQUEST_ID.fullmatch(request_id):
            request_id = None
        if request_id is None and self.access_log:
            request_id = uuid.uuid4().hex[:16]
        seen = Observed(self, protocol, name, request_id)
        if self.tracing is not None:
            carrier = header_carrier(headers)
            if self.tracing.should_trace(carrier):
                seen.trace(self.tracing, route or f"{protocol} {name}", carrier)
        return seen


class Observed:
    """One request being served: call :meth:`done` once with the exception it ended with, or None."""

    __slots__ = ("_observer", "_protocol", "_span", "_started", "_stats", "_token", "name", "request_id", "version")

    def __init__(self, observer: Observer, protocol: str, name: str, request_id: str | None) -> None:
        self._observer = observer
        self._protocol = protocol
        self._started = time.perf_counter()
        self._span: Any = None
        self._token: Any = None
        self.name = name
        self.request_id = request_id  # echoed in the response when set
        self.version: int | None = None  # set once a version is pinned
        self._stats: VersionStats | None = None  # that version's figures, looked up once

    def pin(self, handle: Handle) -> None:
        """The request is served by ``handle``'s version."""
        self.version = handle.version
        self._stats = handle.stats

    def trace(self, tracing: Tracing, route: str, carrier: Mapping[str, str]) -> None:
        from opentelemetry import context, trace

        parent = tracing.extract(carrier)
        self._span = tracing.tracer.start_span(
            route,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"modelserve.model": self.name, "modelserve.protocol": self._protocol},
        )
        self._token = context.attach(trace.set_span_in_context(self._span, parent))

    def span(self, name: str) -> contextlib.AbstractContextManager[Any]:
        """A child span of the request's (``decode``, ``encode``); nothing when tracing is off."""
        if self._span is None or not self._span.is_recording():  # unsampled: children would be dropped
            return contextlib.nullcontext()
        tracing = self._observer.tracing
        assert tracing is not None
        return tracing.tracer.start_as_current_span(name)

    def payload(self, handle: Handle, request: InferRequest, response: InferResponse) -> None:
        """Hand the request and its answer to drift monitoring (a profiled version) and to the
        payload log (if the model asks for it, sampled)."""
        monitoring = self._observer.monitoring
        if monitoring is not None:
            monitoring.observe(response.model_name, handle.version, request, response)
        settings = handle.payload_log
        sink = self._observer.payloads
        if sink is None or not settings.enabled or not payloads.sampled(settings.sample):
            return
        sink.put(
            payloads.Entry(
                time.time(),
                self.request_id,
                self.name,
                str(handle.version),
                self._protocol,
                [(t.name, t.datatype, t.data) for t in request.inputs],
                [(t.name, t.datatype, t.data) for t in response.outputs],
                frozenset(settings.redact),
            )
        )

    def response_headers(self) -> list[tuple[str, str]]:
        """``x-request-id``, and with tracing ``traceparent`` and ``x-trace-id``, for the response."""
        headers = [] if self.request_id is None else [(REQUEST_ID_HEADER, self.request_id)]
        if self._span is not None:
            tracing = self._observer.tracing
            assert tracing is not None
            headers.extend(tracing.inject(self._span).items())
            headers.append((TRACE_ID_HEADER, _trace_id(self._span)))
        return headers

    def done(self, exc: BaseException | None) -> None:
        seconds = time.perf_counter() - self._started
        if self._stats is not None:
            self._stats.request(self._protocol, outcome(exc), seconds)
        else:  # no version pinned (or no figures kept): the manager decides what to count
            self._observer.manager.record_request(self.name, self.version, self._protocol, outcome(exc), seconds)
        trace_id = None
        if self._span is not None:
            trace_id = _trace_id(self._span)
            self._end_span(exc)
        if self._observer.access_log:
            logs.access(
                {
                    "request_id": self.request_id,
                    "trace_id": trace_id,
                    "model": self.name,
                    "version": "" if self.version is None else str(self.version),
                    "protocol": self._protocol,
                    "status": self._status(exc),
                    "latency_ms": round(seconds * 1000, 3),
                    "batch_rows": batch_rows.get() if exc is None else 0,
                }
            )

    def _end_span(self, exc: BaseException | None) -> None:
        from opentelemetry import context, trace

        span, tracing = self._span, self._observer.tracing
        assert tracing is not None
        parent = trace.set_span_in_context(span)
        timing = phases.get() if exc is None and span.is_recording() else None
        if timing is not None:  # recorded after the fact: the batcher knows when each phase ran
            queued, call_started, call_ended = timing
            tracing.tracer.start_span("queue", context=parent, start_time=epoch_ns(queued)).end(
                end_time=epoch_ns(call_started)
            )
            runtime = tracing.tracer.start_span(
                "runtime",
                context=parent,
                start_time=epoch_ns(call_started),
                attributes={"modelserve.batch_rows": batch_rows.get()},
            )
            runtime.end(end_time=epoch_ns(call_ended))
        nodes = node_timings.get()
        if nodes is not None:  # an inference graph: a child span per node, as it ran
            node_timings.set(None)  # a gRPC stream serves several requests in one task
            if span.is_recording():
                for node, started, ended in nodes:
                    child = tracing.tracer.start_span(
                        f"node {node}", context=parent, start_time=epoch_ns(started),
                        attributes={"modelserve.graph_node": node},
                    )  # fmt: skip
                    child.end(end_time=epoch_ns(ended))
        if self.version is not None:
            span.set_attribute("modelserve.version", str(self.version))
        status = self._status(exc)
        span.set_attribute("rpc.grpc.status_code" if self._protocol == "grpc" else "http.response.status_code", status)
        if exc is not None and outcome(exc) == "server_error":
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
        span.end()
        context.detach(self._token)

    def _status(self, exc: BaseException | None) -> int | str:
        grpc = self._protocol == "grpc"
        if exc is None:
            return "OK" if grpc else 200
        if isinstance(exc, ModelServeError):
            return grpc_status(exc.code).name if grpc else http_status(exc.code)
        if isinstance(exc, asyncio.CancelledError):
            return "CANCELLED" if grpc else 499  # the client went away (nginx's convention)
        return "INTERNAL" if grpc else 500


async def watched(seen: Observed, work: Awaitable[T]) -> T:
    """Await ``work`` and tell ``seen`` how it ended (its exception, or None). An exception leaves
    with ``response_headers`` (request id, trace context) for the transport's error reply."""
    try:
        result = await work
    except BaseException as exc:
        seen.done(exc)
        if isinstance(exc, Exception):  # the error reply carries the request and trace ids too
            exc.response_headers = [*getattr(exc, "response_headers", ()), *seen.response_headers()]  # type: ignore[attr-defined]
        raise
    seen.done(None)
    return result


def _trace_id(span: Any) -> str:
    return f"{span.get_span_context().trace_id:032x}"


def outcome(exc: BaseException | None) -> str:
    """``success``, ``client_error`` (the client's mistake: a 4xx) or ``server_error`` (5xx)."""
    if exc is None:
        return "success"
    if isinstance(exc, ModelServeError) and http_status(exc.code) < 500:
        return "client_error"
    if isinstance(exc, asyncio.CancelledError):
        return "client_error"  # the client gave up: not the server's failure
    return "server_error"
