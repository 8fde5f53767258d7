from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from modelserve.routing.split import WeightedSplit

KEYS = [f"user-{i}" for i in range(20_000)]


def _within_binomial(counts: Counter[int], shares: tuple[float, ...], n: int) -> None:
    """Each arm's count is within 5 standard deviations of n * share (fails about once in 3.5 million)."""
    for arm, share in enumerate(shares):
        sigma = math.sqrt(n * share * (1 - share))
        assert abs(counts[arm] - n * share) <= 5 * sigma + 1, (arm, counts[arm], n * share)


@pytest.mark.parametrize("weights", [[90, 10], [1, 2, 0, 3], [0, 1], [5, 0], [1, 1, 1, 1, 1]])
def test_keyed_shares_follow_the_weights(weights: list[float]) -> None:
    split = WeightedSplit(weights, salt="iris")
    counts = Counter(split.choose(key) for key in KEYS)
    _within_binomial(counts, split.shares, len(KEYS))
    assert all(counts[arm] == 0 for arm, w in enumerate(weights) if w == 0)


def test_random_shares_follow_the_weights() -> None:
    split = WeightedSplit([3, 1, 0], salt="iris")
    rng = random.Random(7)
    counts = Counter(split.choose(None, rng) for _ in range(20_000))
    _within_binomial(counts, split.shares, 20_000)
    assert counts[2] == 0
    assert split.choose(None) in (0, 1)  # the random module's generator by default


def test_a_key_never_switches_and_the_salt_matters() -> None:
    split = WeightedSplit([50, 50], salt="iris")
    first = [split.choose(key) for key in KEYS[:1000]]
    for _ in range(3):
        assert [split.choose(key) for key in KEYS[:1000]] == first
    assert [WeightedSplit([50, 50], salt="iris").choose(key) for key in KEYS[:1000]] == first  # another replica
    assert [WeightedSplit([50, 50], salt="wine").choose(key) for key in KEYS[:1000]] != first


def test_growing_a_share_moves_only_keys_towards_it() -> None:
    before, after = WeightedSplit([95, 5], salt="m"), WeightedSplit([75, 25], salt="m")
    moved = [(before.choose(k), after.choose(k)) for k in KEYS]
    assert all(b == a or (b, a) == (0, 1) for b, a in moved)


def test_points_are_in_the_unit_interval() -> None:
    split = WeightedSplit([1], salt="")
    assert all(0 <= split.point(k) < 1 for k in [*KEYS[:2000], "", "\udc80", "é" * 1000])
    assert split.choose("\udc80") == 0  # a lone surrogate (from a header) does not raise


@pytest.mark.parametrize("weights", [[], [0, 0], [-1, 2], [float("nan")], [float("inf"), 1]])
def test_bad_weights(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="split weights"):
        WeightedSplit(weights, salt="x")
