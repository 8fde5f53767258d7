"""Serving statistics: plain counters and histograms kept on the event loop thread.

Why not prometheus-client objects on the hot path: each of their updates takes a lock (and, in
multi-process mode, writes a memory-mapped file), several times per request. Here an update is an
integer addition and a ``bisect`` on the loop thread, which needs no lock; the Prometheus
exposition (server/metrics.py) and the JSON statistics endpoints read snapshots at scrape time.

Statistics are kept per (model, version) for the life of the process, so they survive a reload of
the same version and counters never go backwards.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# seconds: 1-2-3-5-7 per decade from 0.1 ms to 10 s, fine enough to read p50/p95/p99 anywhere between
_DECADES = [round(m * 10.0**e, 10) for e in range(-4, 1) for m in (1, 2, 3, 5, 7)]
LATENCY_BUCKETS: tuple[float, ...] = (*_DECADES, 10.0)
BATCH_BUCKETS: tuple[float, ...] = tuple(float(2**k) for k in range(11))  # 1 .. 1024 rows

OUTCOMES = ("success", "client_error", "server_error")


class Histogram:
    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one: above every bucket (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        """Counts of observations <= each bucket bound, then the total (Prometheus ``le``)."""
        out, running = [], 0
        for n in self.counts:
            running += n
            out.append(running)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"buckets": list(self.buckets), "counts": list(self.counts), "sum": self.sum, "count": self.count}

    def merge(self, other: dict[str, Any]) -> None:
        if tuple(other["buckets"]) != self.buckets:
            return  # another modelserve version's buckets: not comparable
        self.counts = [a + b for a, b in zip(self.counts, other["counts"], strict=True)]
        self.sum += other["sum"]
        self.count += other["count"]


@dataclass(slots=True)
class VersionStats:
    """One model version's figures. ``requests`` by (protocol, outcome); durations in seconds."""

    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    latency: dict[str, Histogram] = field(default_factory=dict)  # by protocol
    queue: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    compute: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    success_seconds: float = 0.0
    failure_seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    last_inference_ms: int = 0  # wall clock, ms since the epoch (Triton's statistics field)

    def request(self, protocol: str, outcome: str, seconds: float) -> None:
        key = (protocol, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(protocol)
        if histogram is None:
            histogram = self.latency[protocol] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)
        if outcome == "success":
            self.success_seconds += seconds
            self.last_inference_ms = int(time.time() * 1000)
        else:
            self.failure_seconds += seconds

    def count(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.requests.items() if o == outcome)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": [[p, o, n] for (p, o), n in self.requests.items()],
            "latency": {p: h.to_dict() for p, h in self.latency.items()},
            "queue": self.queue.to_dict(),
            "compute": self.compute.to_dict(),
            "batch_size": self.batch_size.to_dict(),
            "success_seconds": self.success_seconds,
            "failure_seconds": self.failure_seconds,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "last_inference_ms": self.last_inference_ms,
        }

    def merge(self, doc: dict[str, Any]) -> None:
        """Add another process's figures (serve --workers)."""
        for protocol, outcome, n in doc["requests"]:
            self.requests[(protocol, outcome)] = self.requests.get((protocol, outcome), 0) + n
        for protocol, histogram in doc["latency"].items():
            self.latency.setdefault(protocol, Histogram(LATENCY_BUCKETS)).merge(histogram)
        self.queue.merge(doc["queue"])
        self.compute.merge(doc["compute"])
        self.batch_size.merge(doc["batch_size"])
        self.success_seconds += doc["success_seconds"]
        self.failure_seconds += doc["failure_seconds"]
        self.cache_hits += doc["cache_hits"]
        self.cache_misses += doc["cache_misses"]
        self.last_inference_ms = max(self.last_inference_ms, doc["last_inference_ms"])


@dataclass(slots=True)
class ServerStats:
    """Every version's figures, plus model loads and worker restarts, for one process."""

    versions: dict[tuple[str, str], VersionStats] = field(default_factory=dict)  # (model, version)
    loads: dict[str, Histogram] = field(default_factory=dict)  # load seconds by model
    load_failures: dict[str, int] = field(default_factory=dict)
    worker_restarts: dict[str, int] = field(default_factory=dict)

    def version(self, model: str, version: str) -> VersionStats:
        key = (model, version)
        stats = self.versions.get(key)
        if stats is None:
            stats = self.versions[key] = VersionStats()
        return stats

    def loaded(self, model: str, seconds: float, ok: bool) -> None:
        self.loads.setdefault(model, Histogram(LATENCY_BUCKETS)).observe(seconds)
        if not ok:
            self.load_failures[model] = self.load_failures.get(model, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "versions": [[m, v, s.to_dict()] for (m, v), s in self.versions.items()],
            "loads": {m: h.to_dict() for m, h in self.loads.items()},
            "load_failures": dict(self.load_failures),
            "worker_restarts": dict(self.worker_restarts),
        }

    def merge(self, doc: dict[str, Any]) -> None:
        for model, version, stats in doc["versions"]:
            self.version(model, version).merge(stats)
        for model, histogram in doc["loads"].items():
            self.loads.setdefault(model, Histogram(LATENCY_BUCKETS)).merge(histogram)
        for model, n in doc["load_failures"].items():
            self.load_failures[model] = self.load_failures.get(model, 0) + n
        for model, n in doc["worker_restarts"].items():
            self.worker_restarts[model] = self.worker_restarts.get(model, 0) + n
