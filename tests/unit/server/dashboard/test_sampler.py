"""The dashboard sampler: quantiles from histogram deltas, points from snapshots, and that it runs
only while touched."""

from __future__ import annotations

import asyncio

import pytest

from modelserve.core.stats import LATENCY_BUCKETS, VersionStats
from modelserve.server.dashboard.sampler import Sampler, Totals, point, quantile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, [0, 0, 0, 0], bounds) is None
    assert quantile(0.5, [0, 10, 0, 0], bounds) == pytest.approx(1.5)  # half way through (1, 2]
    assert quantile(0.99, [0, 10, 0, 0], bounds) == pytest.approx(1.99)
    assert quantile(0.25, [10, 10, 0, 0], bounds) == pytest.approx(0.5)
    assert quantile(0.99, [0, 0, 0, 5], bounds) == 4.0  # above every bound: the highest


def test_point_is_the_difference_of_two_snapshots() -> None:
    stats = VersionStats()
    before = Totals()
    before.add(stats)
    for _ in range(8):
        stats.request("rest", "success", 0.001)
    stats.request("rest", "client_error", 0.0002)
    stats.request("grpc", "server_error", 0.05)
    stats.batch_size.observe(4)
    stats.batch_size.observe(2)
    after = Totals()
    after.add(stats)
    p = point(before, after, 2.0, t=5.0)
    assert p.rps == pytest.approx(5.0)
    assert p.error_rate == pytest.approx(0.2)
    assert p.p50 is not None and 0.0007 < p.p50 <= 0.001
    assert p.p99 is not None and 0.03 < p.p99 <= 0.05
    assert p.batch == pytest.approx(3.0)
    idle = point(after, after, 1.0, t=6.0)
    assert (idle.rps, idle.error_rate, idle.p50, idle.batch) == (0.0, None, None, None)


def test_counters_that_went_back_count_from_zero() -> None:
    stats = VersionStats()
    stats.request("rest", "success", 0.001)
    small, big = Totals(), Totals(requests=100, latency=[5] * (len(LATENCY_BUCKETS) + 1))
    small.add(stats)
    assert point(big, small, 1.0, t=0.0).rps == 1.0


def test_series_per_model_sums_versions_and_keeps_the_window() -> None:
    figures = {("m", "1"): VersionStats(), ("m", "2"): VersionStats(), ("other", "1"): VersionStats()}
    clock = Clock()
    sampler = Sampler(
        lambda: ((m, s) for (m, _), s in figures.items()), interval_s=1.0, window_s=3.0, clock=clock, wall=clock
    )
    sampler.sample()
    for step in range(5):
        figures[("m", "1")].request("rest", "success", 0.001)
        figures[("m", "2")].request("rest", "success", 0.001)
        clock.now += 1.0
        sampler.sample()
        assert sampler.latest("m") is not None and sampler.latest("m").t == clock.now  # type: ignore[union-attr]
        assert len(sampler.series("m")["t"]) == min(step + 1, 3)
    series = sampler.series("m")
    assert series["rps"] == [2.0, 2.0, 2.0]
    assert sampler.series("other")["rps"] == [0.0, 0.0, 0.0]
    assert sampler.series("unknown") == {
        "t": [],
        **{k: [] for k in ("rps", "error_rate", "p50", "p95", "p99", "batch")},
    }


def test_runs_while_touched_and_stops_and_forgets_when_idle() -> None:
    asyncio.run(_touched_then_idle())


async def _touched_then_idle() -> None:
    stats = VersionStats()
    sampler = Sampler(lambda: [("m", stats)], interval_s=0.01, idle_s=0.2)
    assert not sampler.running
    sampler.touch()
    assert sampler.running
    for _ in range(200):
        if len(sampler.series("m")["t"]) >= 3:
            break
        await asyncio.sleep(0.01)
    assert len(sampler.series("m")["t"]) >= 3
    for _ in range(300):  # nobody touches it again: it stops by itself
        if not sampler.running:
            break
        await asyncio.sleep(0.01)
    assert not sampler.running
    assert sampler.series("m")["t"] == []
    sampler.touch()  # a later look starts it again
    assert sampler.running
    await sampler.stop()
    assert not sampler.running
