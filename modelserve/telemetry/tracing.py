"""OpenTelemetry tracing of inference requests: a server span per request, with children.

Off unless asked for (``serve --tracing on`` or ``MODELSERVE_TRACING=on``); when off nothing here
runs on the request path (the transports hold ``None`` instead of a :class:`Tracing`). When on:

- the incoming W3C ``traceparent`` (REST header or gRPC metadata) is honoured, so the server span
  joins the caller's trace; the span's own ``traceparent`` and trace id go back in the response
  (``traceparent`` and ``x-trace-id`` headers, gRPC trailing metadata);
- children: ``decode``, ``queue`` (waiting for an instance), ``runtime`` (the runtime call, with
  the rows of its batch), ``encode``;
- sampling is decided before any span is made, parent-based: a caller's ``traceparent`` sampled
  flag is followed, and new traces are sampled at ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
  (``always_on`` default, ``always_off``, ``traceidratio`` and their ``parentbased_`` forms); an
  unsampled request pays for one random number;
- export follows the standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``, the default,
  ``console`` or ``none``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
  and the rest of ``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME`` (default ``modelserve``); spans
  leave in batches from a background thread.

The tracer provider is the server's own (not OpenTelemetry's global one), so several servers in
one process (tests) keep their spans apart. Needs the ``tracing`` extra.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

from modelserve.errors import ConfigError

# perf_counter() seconds -> epoch nanoseconds, for spans recorded after the fact
_EPOCH_OFFSET_NS = time.time_ns() - time.perf_counter_ns()


def epoch_ns(perf_seconds: float) -> int:
    return int(perf_seconds * 1e9) + _EPOCH_OFFSET_NS


class Tracing:
    def __init__(self, exporter: Any = None) -> None:
        """``exporter``: a SpanExporter to use as is, synchronously (tests); None: from ``OTEL_*``."""
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise ConfigError("tracing needs OpenTelemetry: pip install 'modelserve[tracing]'") from None
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "modelserve")})
        # the sampling decision is taken before any span exists (should_trace): a request that is
        # not sampled costs a random number, not an OpenTelemetry span (~10 us even unrecorded)
        self.ratio = _ratio_from_environment()
        self.provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
        if exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            configured = _exporter_from_environment()
            if configured is not None:
                self.provider.add_span_processor(BatchSpanProcessor(configured))
        self.tracer = self.provider.get_tracer("modelserve")
        self._propagator = TraceContextTextMapPropagator()

    def should_trace(self, carrier: Mapping[str, str]) -> bool:
        """Parent-based head sampling: follow the caller's ``traceparent`` sampled flag; a new trace
        is sampled at ``OTEL_TRACES_SAMPLER(_ARG)``'s ratio."""
        parent = carrier.get("traceparent")
        if parent is not None and len(parent) == 55 and parent[2] == "-":
            try:
                return bool(int(parent[-2:], 16) & 1)
            except ValueError:
                pass  # malformed: a new trace, as the propagator would make
        return self.ratio >= 1.0 or (self.ratio > 0.0 and random.random() < self.ratio)

    def extract(self, carrier: Mapping[str, str]) -> Any:
        """The caller's trace context from ``traceparent``/``tracestate`` (an empty one if absent)."""
        return self._propagator.extract(carrier)

    def inject(self, span: Any) -> dict[str, str]:
        """``traceparent`` (and ``tracestate``) for ``span``: what goes back in the response."""
        from opentelemetry import trace

        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def shutdown(self) -> None:
        self.provider.shutdown()  # flushes what is batched


def _ratio_from_environment() -> float:
    """The share of new traces to sample, from OpenTelemetry's standard sampler variables."""
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if sampler in ("always_on", "parentbased_always_on"):
        return 1.0
    if sampler in ("always_off", "parentbased_always_off"):
        return 0.0
    if sampler in ("traceidratio", "parentbased_traceidratio"):
        raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
        except ValueError:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r}: expected a number from 0 to 1") from None
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r}: expected a number from 0 to 1")
        return ratio
    raise ConfigError(
        f"OTEL_TRACES_SAMPLER={sampler!r}: modelserve supports always_on, always_off, traceidratio and their "
        "parentbased_ forms"
    )


def _exporter_from_environment() -> Any:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        if protocol not in (None, "http/protobuf"):
            raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: modelserve exports OTLP over http/protobuf")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ConfigError(f"OTEL_TRACES_EXPORTER={kind!r}: expected otlp, console or none")


def header_carrier(headers: Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """``traceparent``/``tracestate`` from raw headers or gRPC metadata, as the propagator reads them."""
    carrier = {}
    for key, value in headers:
        name = key.decode("latin-1") if isinstance(key, bytes) else key
        if name in ("traceparent", "tracestate"):
            carrier[name] = value.decode("latin-1") if isinstance(value, bytes) else value
    return carrier
