from __future__ import annotations

import json
from dataclasses import replace

import pytest

from modelserve.config.traffic import Canary, Target
from modelserve.routing.canary import MAX_ENTRIES, CanaryJudge, Verdict

RULES = Canary(stable=Target(version=1), candidate=Target(version=2))  # the defaults: 60 s window, 20 requests


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _judge(**rules: object) -> tuple[CanaryJudge, Clock]:
    clock = Clock()
    return CanaryJudge(replace(RULES, **rules), clock=clock), clock  # type: ignore[arg-type]


def _feed(judge: CanaryJudge, arm: str, n: int, failures: int = 0, seconds: float = 0.01) -> None:
    for i in range(n):
        judge.observe(arm, i >= failures, seconds)


def test_starts_at_the_first_step() -> None:
    judge, _ = _judge()
    assert (judge.status, judge.step, judge.share) == ("running", 0, 0.05)
    assert judge.evaluate() is None  # nothing seen yet


def test_a_failing_candidate_is_rolled_back_with_the_figures() -> None:
    judge, _ = _judge()
    _feed(judge, "stable", 100)
    _feed(judge, "candidate", 100, failures=31)
    verdict = judge.evaluate()
    reason = "candidate error rate 0.31 vs stable 0.00 over the last 60 s (max increase 0.05)"
    assert verdict == Verdict("rollback", 0.0, reason)
    assert (judge.status, judge.share, judge.reason) == ("rolled_back", 0.0, reason)
    _feed(judge, "candidate", 100)
    assert judge.evaluate() is None  # final


def test_min_requests_is_respected() -> None:
    judge, _ = _judge()
    _feed(judge, "stable", 100)
    _feed(judge, "candidate", 19, failures=19)
    assert judge.evaluate() is None and judge.status == "running"
    _feed(judge, "candidate", 1, failures=1)
    verdict = judge.evaluate()
    assert verdict is not None and verdict.kind == "rollback" and "1.00 vs stable 0.00" in verdict.reason


def test_stable_errors_excuse_the_candidate_only_with_enough_stable_requests() -> None:
    judge, _ = _judge()
    _feed(judge, "stable", 100, failures=5)  # 0.05
    _feed(judge, "candidate", 100, failures=10)  # 0.10: exactly the allowed increase
    assert judge.evaluate() is None and judge.status == "running"

    judge, _ = _judge()
    _feed(judge, "stable", 10, failures=10)  # too few to count: the stable rate is taken as 0
    _feed(judge, "candidate", 20, failures=2)
    verdict = judge.evaluate()
    assert verdict is not None and verdict.kind == "rollback" and "0.10 vs stable 0.00" in verdict.reason


def test_p99_rule() -> None:
    judge, _ = _judge()
    _feed(judge, "stable", 100, seconds=0.010)
    _feed(judge, "candidate", 100, seconds=0.030)
    verdict = judge.evaluate()
    assert verdict is not None and verdict.kind == "rollback" and verdict.share == 0.0
    assert verdict.reason == "candidate p99 0.0300 s vs stable 0.0100 s over the last 60 s (max ratio 2)"

    judge, _ = _judge()  # twice as slow is still allowed
    _feed(judge, "stable", 100, seconds=0.010)
    _feed(judge, "candidate", 100, seconds=0.020)
    assert judge.evaluate() is None

    judge, _ = _judge()  # ten times a sub-millisecond latency is noise
    _feed(judge, "stable", 100, seconds=0.0001)
    _feed(judge, "candidate", 100, seconds=0.001)
    assert judge.evaluate() is None

    judge, _ = _judge()  # too few stable requests to compare latency with
    _feed(judge, "stable", 19, seconds=0.001)
    _feed(judge, "candidate", 100, seconds=1.0)
    assert judge.evaluate() is None and judge.status == "running"


def test_healthy_traffic_steps_through_to_promotion() -> None:
    judge, clock = _judge()
    start = clock.now
    verdicts: list[tuple[float, Verdict]] = []
    for _ in range(1400):  # one second at a time: 10 requests per arm, then a verdict
        clock.now += 1
        _feed(judge, "stable", 10, failures=1 if clock.now % 7 == 0 else 0)
        _feed(judge, "candidate", 10, failures=1 if clock.now % 5 == 0 else 0)
        verdict = judge.evaluate()
        if verdict is not None:
            verdicts.append((clock.now - start, verdict))
    assert [(v.kind, v.share) for _, v in verdicts] == [
        ("step", 0.25),
        ("step", 0.5),
        ("step", 1.0),
        ("promoted", 1.0),
    ]
    # judged from the second tick (20 candidate requests), then 300 s healthy per step
    assert [t for t, _ in verdicts] == [302, 602, 902, 1202]
    assert (judge.status, judge.step, judge.share) == ("promoted", 3, 1.0)
    assert judge.reason.startswith("promoted: healthy for 300 s at share 1")
    assert verdicts[0][1].reason.startswith("step 2: healthy for 300 s at share 0.05 (error rate")


def test_a_gap_or_too_little_traffic_restarts_the_healthy_run() -> None:
    judge, clock = _judge(promote_after_s=100)
    _feed(judge, "stable", 50)
    _feed(judge, "candidate", 50)
    assert judge.evaluate() is None  # healthy since now
    clock.now += 59
    _feed(judge, "stable", 50)
    _feed(judge, "candidate", 50)
    assert judge.evaluate() is None
    clock.now += 61  # longer than the window without a verdict: the run is broken
    _feed(judge, "stable", 50)
    _feed(judge, "candidate", 50)
    assert judge.evaluate() is None
    clock.now += 50
    _feed(judge, "stable", 50)
    _feed(judge, "candidate", 50)
    assert judge.evaluate() is None
    clock.now += 50  # 100 s after the restart (the last requests are 50 s old: still in the window)
    verdict = judge.evaluate()
    assert verdict is not None and verdict.kind == "step"

    judge, clock = _judge(promote_after_s=100)
    _feed(judge, "candidate", 50)
    assert judge.evaluate() is None
    clock.now += 61  # the window empties: not judged, the run ends
    assert judge.evaluate() is None
    clock.now += 40
    _feed(judge, "candidate", 50)
    assert judge.evaluate() is None and judge.step == 0  # 101 s after the first, but a new run


def test_promote_after_0_never_steps() -> None:
    judge, clock = _judge(promote_after_s=0)
    for _ in range(1000):
        clock.now += 1
        _feed(judge, "stable", 1)
        _feed(judge, "candidate", 1)
        assert judge.evaluate() is None
    assert judge.share == 0.05


def test_the_window_slides_and_is_kept_across_steps() -> None:
    judge, clock = _judge(promote_after_s=10, window_s=60)
    _feed(judge, "candidate", 100, failures=100)
    clock.now += 60.5  # the failures leave the window before any verdict
    _feed(judge, "candidate", 20)
    assert judge.window()["candidate"] == {"requests": 20, "errors": 0, "error_rate": 0.0, "p99_s": 0.01}
    assert judge.evaluate() is None
    clock.now += 10
    verdict = judge.evaluate()
    assert verdict is not None and verdict.kind == "step" and judge.share == 0.25
    _feed(judge, "candidate", 3, failures=3)  # the earlier 20 requests still count: 3 of 23 failed
    verdict = judge.evaluate()
    assert verdict is not None and verdict.kind == "rollback" and "0.13 vs stable 0.00" in verdict.reason
    assert judge.window() == {
        "stable": {"requests": 0, "errors": 0, "error_rate": 0.0, "p99_s": 0.0},
        "candidate": {"requests": 23, "errors": 3, "error_rate": 3 / 23, "p99_s": 0.01},
    }


def test_each_arm_keeps_a_bounded_window() -> None:
    judge, _ = _judge()
    _feed(judge, "stable", MAX_ENTRIES + 10, failures=20)
    assert judge.window()["stable"]["requests"] == MAX_ENTRIES
    assert judge.window()["stable"]["errors"] == 10  # the oldest went first
    with pytest.raises(ValueError, match="'primary'"):
        judge.observe("primary", True, 0.1)


def test_state_round_trips_and_bad_state_is_refused() -> None:
    judge, clock = _judge(promote_after_s=10)
    _feed(judge, "stable", 20)
    _feed(judge, "candidate", 20)
    judge.evaluate()
    clock.now += 10
    assert judge.evaluate() is not None
    state = json.loads(json.dumps(judge.state()))
    assert state["status"] == "running" and state["step"] == 1 and state["share"] == 0.25
    fresh, _ = _judge(promote_after_s=10)
    assert fresh.restore(state) is True and fresh.state() == judge.state()

    rolled = {"status": "rolled_back", "step": 1, "share": 0.0, "reason": "by hand"}
    assert fresh.restore(rolled) is True and fresh.share == 0.0 and fresh.evaluate() is None
    for bad in [
        {**state, "step": 4},  # steps that no longer exist
        {**state, "share": 0.3},
        {**state, "status": "paused"},
        {**state, "step": True},
        {**state, "reason": None},
        {"status": "promoted", "step": 1, "share": 1.0, "reason": ""},
        {},
        [1],
        None,
    ]:
        assert judge.restore(bad) is False  # type: ignore[arg-type]
    assert judge.state() == state
