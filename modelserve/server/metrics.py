"""``GET /metrics`` (Prometheus text format) and ``GET /v2/models/{m}[/versions/{v}]/stats`` (JSON,
Triton's statistics extension), both read from the manager's statistics (core/stats.py).

Metrics (all per model and version unless said otherwise):

- ``modelserve_requests_total{protocol, outcome}``: inference requests by outcome (``success``,
  ``client_error`` = 4xx, ``server_error`` = 5xx);
- ``modelserve_request_duration_seconds{protocol}``: histogram, 0.1 ms to 10 s, 5 buckets a decade;
- ``modelserve_queue_duration_seconds``, ``modelserve_compute_duration_seconds``: time waiting for
  an instance, and runtime calls (one per batch);
- ``modelserve_batch_rows``: rows per runtime call; ``modelserve_inflight_requests``;
  ``modelserve_cache_requests_total{result}``;
- per server: ``modelserve_model_versions{state}``, ``modelserve_model_load_duration_seconds{model}``,
  ``modelserve_model_load_failures_total{model}``, ``modelserve_worker_restarts_total{model}``
  (worker processes of ``processes: N`` models), and prometheus-client's ``process_*`` (CPU, memory);
- traffic policies and inference graphs: see server/routing_metrics.py; drift and outliers:
  server/monitoring_metrics.py.

Several server processes (``serve --workers N``): each worker writes its figures to a file in the
directory the supervisor gives it (``MODELSERVE_STATS_DIR``) every second, and a scrape of any
worker adds up every worker's file (its own figures live), so counters and histograms are the
whole server's; files of workers that died stay, so counters never go backwards. Gauges
(in-flight requests, versions by state) are the answering worker's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelserve.core.manager import ModelManager
from modelserve.core.stats import Histogram, ServerStats, VersionStats
from modelserve.errors import ModelNotFound
from modelserve.monitoring.service import Monitoring
from modelserve.protocol.v2.rest import dumps
from modelserve.routing.router import Router
from modelserve.server.http.app import JSON, Reply, Request, Route, parse_version
from modelserve.server.monitoring_metrics import monitoring_families
from modelserve.server.routing_metrics import routing_families
from modelserve.telemetry.payloads import PayloadSink
from modelserve.types import ModelState

log = logging.getLogger(__name__)

PUBLISH_INTERVAL_S = 1.0


class Metrics:
    def __init__(self, manager: ModelManager, stats_dir: Path | None = None) -> None:
        self._manager = manager
        self._stats_dir = stats_dir
        self.payloads: PayloadSink | None = None  # the payload log, whose entries are counted
        self.router: Router | None = None  # traffic policies, whose figures are exported too
        self.monitoring: Monitoring | None = None  # drift and outlier monitoring, likewise
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        ProcessCollector(registry=self._registry)

    def routes(self, metrics_role: str = "infer") -> list[Route]:
        """``/metrics`` (needing ``metrics_role`` when auth is on) and the per-model stats."""
        model = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
        return [
            Route(r"/metrics", {"GET": self.metrics}, role=metrics_role, gated=False),
            Route(model + r"/stats", {"GET": self.model_stats}),
        ]

    async def metrics(self, request: Request) -> Reply:
        body = await asyncio.to_thread(generate_latest, self._registry)
        return 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())]

    async def model_stats(self, request: Request) -> Reply:
        return 200, dumps(self.statistics(request.params["model"], parse_version(request.params))), JSON

    def statistics(self, name: str, version: int | None) -> dict[str, Any]:
        """``{"model_stats": [...]}`` for every version of ``name`` that served (or ``version``);
        ``name`` "" means every model. Raises ModelNotFound."""
        if name:
            self._manager.model(name)  # 404 for an unknown model
        rows = [
            _triton_stats(model, v, stats)
            for (model, v), stats in sorted(self.merged().versions.items())
            if (not name or model == name) and v and (version is None or v == str(version))
        ]
        if version is not None and not rows:
            raise ModelNotFound(f"model {name!r} version {version} has served no request")
        return {"model_stats": rows}

    # -- several processes -------------------------------------------------------------------

    def merged(self) -> ServerStats:
        """This process's figures plus every other worker's last published ones."""
        if self._stats_dir is None:
            return self._manager.stats
        total = ServerStats()
        total.merge(self._manager.stats.to_dict())
        own = f"{os.getpid()}.json"
        for path in self._stats_dir.glob("*.json"):
            if path.name == own:
                continue
            try:
                total.merge(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError) as exc:  # being replaced this instant: next scrape
                log.debug("skipping %s: %s", path, exc)
        return total

    async def publish(self) -> None:
        """Write this process's figures for the other workers, every PUBLISH_INTERVAL_S, until cancelled."""
        assert self._stats_dir is not None
        target = self._stats_dir / f"{os.getpid()}.json"
        try:
            while True:
                await asyncio.sleep(PUBLISH_INTERVAL_S)
                self._write(target)
        finally:
            with contextlib.suppress(OSError):
                self._write(target)  # the last figures of a worker that stops

    def _write(self, target: Path) -> None:
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._manager.stats.to_dict()))
        os.replace(temporary, target)

    def live(self) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
        """In-flight requests by version, versions by state, worker-process restarts by model."""
        inflight: dict[tuple[str, str], int] = {}
        states = {state.value.lower(): 0 for state in ModelState}
        restarts: dict[str, int] = {}
        for name, mv in self._manager.versions():
            inflight[(name, str(mv.version))] = mv.inflight
            states[mv.state.value.lower()] += 1
            count = getattr(mv.runtime, "restarts", 0)
            if isinstance(count, int) and count:
                restarts[name] = restarts.get(name, 0) + count
        return inflight, states, restarts


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        stats = self._metrics.merged()
        inflight, states, restarts = self._metrics.live()
        versions = sorted(stats.versions.items())
        requests = CounterMetricFamily(
            "modelserve_requests", "Inference requests by outcome", labels=["model", "version", "protocol", "outcome"]
        )
        latency = _histograms(
            "modelserve_request_duration_seconds", "Request latency", ["model", "version", "protocol"]
        )
        queue = _histograms("modelserve_queue_duration_seconds", "Time waiting for an instance", ["model", "version"])
        compute = _histograms("modelserve_compute_duration_seconds", "Runtime call duration", ["model", "version"])
        batch = _histograms("modelserve_batch_rows", "Rows per runtime call", ["model", "version"])
        cache = CounterMetricFamily(
            "modelserve_cache_requests", "Response cache lookups", labels=["model", "version", "result"]
        )
        for (model, version), v in versions:
            for (protocol, outcome), n in sorted(v.requests.items()):
                requests.add_metric([model, version, protocol, outcome], n)
            for protocol, histogram in sorted(v.latency.items()):
                _add(latency, [model, version, protocol], histogram)
            if v.queue.count:
                _add(queue, [model, version], v.queue)
            if v.compute.count:
                _add(compute, [model, version], v.compute)
            if v.batch_size.count:
                _add(batch, [model, version], v.batch_size)
            if v.cache_hits or v.cache_misses:
                cache.add_metric([model, version, "hit"], v.cache_hits)
                cache.add_metric([model, version, "miss"], v.cache_misses)
        yield from (requests, latency, queue, compute, batch, cache)

        gauge = GaugeMetricFamily("modelserve_inflight_requests", "Requests being served", labels=["model", "version"])
        for (model, version), n in sorted(inflight.items()):
            gauge.add_metric([model, version], n)
        yield gauge
        by_state = GaugeMetricFamily("modelserve_model_versions", "Model versions by state", labels=["state"])
        for state, n in sorted(states.items()):
            by_state.add_metric([state], n)
        yield by_state
        loads = _histograms("modelserve_model_load_duration_seconds", "Model version load duration", ["model"])
        for model, histogram in sorted(stats.loads.items()):
            _add(loads, [model], histogram)
        yield loads
        failures = CounterMetricFamily("modelserve_model_load_failures", "Failed model loads", labels=["model"])
        for model, n in sorted(stats.load_failures.items()):
            failures.add_metric([model], n)
        yield failures
        worker_restarts = CounterMetricFamily(
            "modelserve_worker_restarts", "Worker processes replaced after dying", labels=["model"]
        )
        for model, n in sorted(restarts.items()):
            worker_restarts.add_metric([model], n)
        yield worker_restarts
        yield from self._admission()
        sink = self._metrics.payloads
        if sink is not None:
            entries = CounterMetricFamily(
                "modelserve_payload_log_entries", "Payload log entries by result", labels=["result"]
            )
            for result in ("written", "dropped", "failed"):
                entries.add_metric([result], getattr(sink.counts, result))
            yield entries
        yield from routing_families(self._metrics.router, self._metrics._manager)
        yield from monitoring_families(self._metrics.monitoring)

    def _admission(self) -> Iterator[Metric]:
        """Requests a version turned away (queue full) or answered 504 (timeout), and its bound."""
        rejected = CounterMetricFamily(
            "modelserve_rejected_requests",
            "Requests refused because the version's queue was full, or that passed their deadline",
            labels=["model", "version", "reason"],
        )
        limit = GaugeMetricFamily(
            "modelserve_admission_limit", "Requests a version admits at once (limits.max_queue + instances)",
            labels=["model", "version"],
        )  # fmt: skip
        for name, mv in self._metrics._manager.versions():
            admission = mv.admission
            if admission is None:
                continue
            version = str(mv.version)
            rejected.add_metric([name, version, "queue_full"], admission.refused)
            rejected.add_metric([name, version, "timeout"], admission.timed_out)
            limit.add_metric([name, version], admission.capacity)
        yield from (rejected, limit)


def _histograms(name: str, documentation: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, labels=labels)


def _add(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    bounds = [*(_bound(b) for b in histogram.buckets), "+Inf"]
    buckets = list(zip(bounds, histogram.cumulative(), strict=True))
    family.add_metric(labels, buckets, sum_value=histogram.sum)


def _bound(value: float) -> str:
    return repr(float(value))


def _triton_stats(model: str, version: str, stats: VersionStats) -> dict[str, Any]:
    """One model_stats entry as Triton's statistics extension shapes it (durations in ns)."""
    success, failed = stats.count("success"), stats.count("client_error") + stats.count("server_error")
    return {
        "name": model,
        "version": version,
        "last_inference": stats.last_inference_ms,
        "inference_count": success,
        "execution_count": stats.compute.count,
        "inference_stats": {
            "success": {"count": success, "ns": int(stats.success_seconds * 1e9)},
            "fail": {"count": failed, "ns": int(stats.failure_seconds * 1e9)},
            "queue": {"count": stats.queue.count, "ns": int(stats.queue.sum * 1e9)},
            "compute_infer": {"count": stats.compute.count, "ns": int(stats.compute.sum * 1e9)},
            "cache_hit": {"count": stats.cache_hits, "ns": 0},
            "cache_miss": {"count": stats.cache_misses, "ns": 0},
        },
        "batch_stats": [
            {"batch_size": int(bound), "compute_infer": {"count": n}}
            for bound, n in zip(stats.batch_size.buckets, stats.batch_size.counts, strict=False)
            if n
        ],
    }
