"""Refresh loops and intervals of the precompute job."""

from __future__ import annotations

import threading

import pytest

from modelserve.errors import ConfigError
from modelserve.precompute.job import every, parse_interval, watch_production


def test_watch_production_recomputes_when_the_production_version_changes() -> None:
    answers = iter([None, 1, 1, 2, 2, RuntimeError("database down"), 3])
    ran: list[int] = []
    stop = threading.Event()

    def production() -> int | None:
        try:
            answer = next(answers)
        except StopIteration:
            stop.set()
            return 3
        if isinstance(answer, Exception):
            raise answer
        return answer

    def job(version: int) -> None:
        if version == 3 and 3 not in ran and ran.count(-3) == 0:
            ran.append(-3)  # the first try fails: retried at the next poll
            raise RuntimeError("scoring failed")
        ran.append(version)

    watch_production(production, job, stop, poll_s=0)
    assert ran == [1, 2, -3, 3]


def test_every_runs_at_once_and_then_on_the_interval() -> None:
    stop = threading.Event()
    runs: list[int] = []

    def job() -> None:
        runs.append(1)
        if len(runs) == 3:
            stop.set()

    every(0.01, job, stop)
    assert len(runs) == 3


def test_intervals() -> None:
    assert parse_interval("1h") == 3600 and parse_interval("15m") == 900 and parse_interval("30") == 30
    with pytest.raises(ConfigError, match="expected a positive number"):
        parse_interval("soon")
