from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from modelserve.errors import InvalidInput
from modelserve.routing.bandit import EpsilonGreedy, FeedbackLedger, Thompson

P = (0.2, 0.5, 0.8)  # Bernoulli reward probability per arm; arm 2 is the best


def _play(bandit: EpsilonGreedy | Thompson, pulls: int, seed: int) -> list[int]:
    world = random.Random(seed)
    chosen = []
    for _ in range(pulls):
        arm = bandit.choose()
        bandit.reward(arm, 1.0 if world.random() < P[arm] else 0.0)
        chosen.append(arm)
    return chosen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_thompson_converges_on_the_best_arm(seed: int) -> None:
    chosen = _play(Thompson(3, rng=random.Random(seed)), 3000, seed)
    assert Counter(chosen[-1000:])[2] > 800


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_epsilon_greedy_converges_on_the_best_arm(seed: int) -> None:
    bandit = EpsilonGreedy(3, epsilon=0.1, rng=random.Random(seed))
    chosen = _play(bandit, 3000, seed)
    assert Counter(chosen[-1000:])[2] > 800  # 90% exploiting plus a third of the 10% exploring
    rows = bandit.summary()
    assert sum(r["pulls"] for r in rows) == 3000 and sum(r["rewards"] for r in rows) == 3000
    assert abs(rows[2]["mean_reward"] - 0.8) < 0.05


def test_epsilon_greedy_tries_unrewarded_arms_first_and_takes_any_finite_reward() -> None:
    bandit = EpsilonGreedy(4, epsilon=0.0, rng=random.Random(0))
    first = []
    for _ in range(4):
        arm = bandit.choose()
        bandit.reward(arm, -2.5 if arm != 3 else 10)  # revenue, not 0/1
        first.append(arm)
    assert sorted(first) == [0, 1, 2, 3]
    assert {bandit.choose() for _ in range(20)} == {3}
    for bad in (float("nan"), float("inf"), "1"):
        with pytest.raises(InvalidInput, match="reward must be a finite number"):
            bandit.reward(0, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="arm must be an integer from 0 to 3, got 4"):
        bandit.reward(4, 1.0)


def test_ties_are_broken_at_random() -> None:
    bandit = EpsilonGreedy(2, epsilon=0.0, rng=random.Random(5))
    bandit.reward(0, 1.0)
    bandit.reward(1, 1.0)
    assert set(Counter(bandit.choose() for _ in range(200))) == {0, 1}


def test_thompson_rejects_rewards_outside_0_1_and_reports_its_posterior() -> None:
    bandit = Thompson(2, rng=random.Random(0))
    with pytest.raises(InvalidInput, match=r"from 0 to 1.*1\.5"):
        bandit.reward(0, 1.5)
    with pytest.raises(InvalidInput):
        bandit.reward(0, -0.1)
    bandit.reward(0, 1.0)
    bandit.reward(0, 0.0)
    bandit.reward(0, 0.5)
    bandit.choose()
    assert bandit.summary()[0] == {"pulls": bandit.summary()[0]["pulls"], "rewards": 3, "mean_reward": 0.5,
                                   "alpha": 2.5, "beta": 2.5}  # fmt: skip
    assert bandit.summary()[1]["alpha"] == 1.0 and bandit.summary()[1]["beta"] == 1.0


@pytest.mark.parametrize(
    "make", [lambda: Thompson(3, rng=random.Random(1)), lambda: EpsilonGreedy(3, 0.1, random.Random(1))]
)
def test_state_round_trips_through_json(make) -> None:  # type: ignore[no-untyped-def]
    bandit = make()
    _play(bandit, 500, 9)
    state = json.loads(json.dumps(bandit.state()))
    fresh = make()
    assert fresh.restore(state) is True
    assert fresh.summary() == bandit.summary() and fresh.state() == bandit.state()


def test_restore_refuses_mismatched_or_malformed_state_without_raising() -> None:
    bandit = Thompson(3, rng=random.Random(1))
    _play(bandit, 100, 1)
    good = bandit.state()
    before = bandit.state()
    bad_states = [
        Thompson(2).state(),  # other arm count
        EpsilonGreedy(3, 0.1).state(),  # other kind
        {**good, "pulls": [1, 2]},
        {**good, "pulls": [1, 2, -3]},
        {**good, "pulls": [1, 2, True]},
        {**good, "rewards": "many"},
        {**good, "reward_sums": [1.0, 2.0, float("nan")]},
        {**good, "rewards": [0, 0, 0]},  # Thompson: a sum above its count
        {"kind": "thompson"},
        {},
        [1, 2, 3],
        None,
    ]
    for state in bad_states:
        assert bandit.restore(state) is False  # type: ignore[arg-type]
    assert bandit.state() == before


def test_ledger_takes_once() -> None:
    ledger = FeedbackLedger(capacity=10, ttl_s=60)
    ledger.remember("r1", 2)
    assert ledger.take("r1") == 2
    assert ledger.take("r1") is None
    assert ledger.take("never") is None


def test_ledger_evicts_the_oldest_beyond_capacity() -> None:
    ledger = FeedbackLedger(capacity=3, ttl_s=60)
    for i in range(5):
        ledger.remember(f"r{i}", i)
    assert len(ledger) == 3
    assert [ledger.take(f"r{i}") for i in range(5)] == [None, None, 2, 3, 4]
    ledger.remember("a", 0)
    ledger.remember("b", 1)
    ledger.remember("a", 5)  # remembered again: now the newest
    ledger.remember("c", 2)
    ledger.remember("d", 3)
    assert ledger.take("b") is None and ledger.take("a") == 5


def test_ledger_forgets_after_the_ttl() -> None:
    now = [0.0]
    ledger = FeedbackLedger(capacity=100, ttl_s=10, clock=lambda: now[0])
    ledger.remember("old", 1)
    now[0] = 5.0
    ledger.remember("new", 2)
    now[0] = 10.0
    assert ledger.take("old") is None  # expired at 10
    assert ledger.take("new") == 2
    ledger.remember("x", 0)
    now[0] = 100.0
    ledger.remember("y", 1)  # drops the expired "x" as it goes
    assert len(ledger) == 1
