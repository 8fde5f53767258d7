"""The dashboard's live figures: once a second, a snapshot of the cumulative serving statistics
(core/stats.py) becomes one point per model: requests/s, error rate, p50/p95/p99 latency (from the
histogram deltas) and the mean batch size, kept in a ring of the last five minutes.

It costs nothing on the inference path: the statistics it reads are kept anyway, and it runs only
while someone looks. The first dashboard request starts it (:meth:`Sampler.touch`); after
``idle_s`` without one it stops and forgets its points. It runs on the server's event loop, where
the statistics are updated, so it reads them without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from modelserve.core.stats import LATENCY_BUCKETS, VersionStats

Stats = Callable[[], Iterable[tuple[str, VersionStats]]]  # (model name, one version's figures)

SERIES = ("rps", "error_rate", "p50", "p95", "p99", "batch")


@dataclass(slots=True)
class Totals:
    """One model's cumulative figures, summed over its versions and protocols."""

    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    batches: int = 0
    rows: float = 0.0

    def add(self, stats: VersionStats) -> None:
        for (_, outcome), n in stats.requests.items():
            self.requests += n
            if outcome != "success":
                self.errors += n
        for histogram in stats.latency.values():
            self.latency = [a + b for a, b in zip(self.latency, histogram.counts, strict=True)]
        self.batches += stats.batch_size.count
        self.rows += stats.batch_size.sum


@dataclass(frozen=True, slots=True)
class Point:
    """One model's figures over one interval: latencies in seconds, None when nothing was measured."""

    t: float  # wall clock, seconds since the epoch (the end of the interval)
    rps: float
    error_rate: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    batch: float | None


def quantile(q: float, counts: list[int], bounds: tuple[float, ...]) -> float | None:
    """The ``q`` quantile of a histogram (``counts[i]``: observations in (bounds[i-1], bounds[i]],
    the last one above every bound), interpolated linearly inside its bucket as Prometheus's
    ``histogram_quantile`` does; the highest bound for the overflow bucket; None when empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank, running = q * total, 0
    for i, n in enumerate(counts):
        if n and running + n >= rank:
            if i == len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * (rank - running) / n
        running += n
    return bounds[-1]


def point(before: Totals, after: Totals, seconds: float, t: float) -> Point:
    """The figures between two snapshots ``seconds`` apart. Counters that went back (a model
    removed and added again) count from zero."""
    if after.requests < before.requests:
        before = Totals()
    requests, errors = after.requests - before.requests, after.errors - before.errors
    latency = [max(0, a - b) for a, b in zip(after.latency, before.latency, strict=True)]
    batches, rows = after.batches - before.batches, after.rows - before.rows
    return Point(
        t=t,
        rps=requests / seconds if seconds > 0 else 0.0,
        error_rate=errors / requests if requests else None,
        p50=quantile(0.50, latency, LATENCY_BUCKETS),
        p95=quantile(0.95, latency, LATENCY_BUCKETS),
        p99=quantile(0.99, latency, LATENCY_BUCKETS),
        batch=rows / batches if batches > 0 else None,
    )


class Sampler:
    """Samples ``stats`` every ``interval_s`` into rings of ``window_s`` per model while touched."""

    def __init__(
        self,
        stats: Stats,
        *,
        interval_s: float = 1.0,
        window_s: float = 300.0,
        idle_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._stats = stats
        self.interval_s = interval_s
        self.idle_s = idle_s
        self._size = max(1, math.ceil(window_s / interval_s))
        self._clock, self._wall = clock, wall
        self._rings: dict[str, deque[Point]] = {}
        self._last: dict[str, Totals] = {}
        self._last_at = 0.0
        self._touched = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def touch(self) -> None:
        """Someone is looking: start sampling (on the running loop) if it is not already."""
        self._touched = self._clock()
        if not self.running:
            self.sample()  # the baseline: the first point comes one interval later
            self._task = asyncio.get_running_loop().create_task(self._run(), name="dashboard-sampler")

    def sample(self) -> None:
        """Take one snapshot; a model seen before gets a point."""
        now, wall = self._clock(), self._wall()
        totals: dict[str, Totals] = {}
        for model, stats in self._stats():
            totals.setdefault(model, Totals()).add(stats)
        seconds = now - self._last_at
        for model, after in totals.items():
            before = self._last.get(model)
            if before is not None:
                ring = self._rings.setdefault(model, deque(maxlen=self._size))
                ring.append(point(before, after, seconds, wall))
        self._last, self._last_at = totals, now

    def series(self, model: str) -> dict[str, list[float | None]]:
        """The model's ring as columns: ``t`` (epoch seconds) and each of :data:`SERIES`."""
        ring = list(self._rings.get(model, ()))
        columns: dict[str, list[float | None]] = {"t": [p.t for p in ring]}
        for name in SERIES:
            columns[name] = [getattr(p, name) for p in ring]
        return columns

    def latest(self, model: str) -> Point | None:
        ring = self._rings.get(model)
        return ring[-1] if ring else None

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            while self._clock() - self._touched < self.idle_s:
                await asyncio.sleep(self.interval_s)
                self.sample()
        finally:
            # nobody looked for idle_s: forget, so that a later look does not chart a gap as a line
            self._rings.clear()
            self._last.clear()
