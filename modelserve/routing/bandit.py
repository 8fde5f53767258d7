"""Multi-armed bandits over a policy's variants, and the ledger that ties feedback to the arm chosen.

Pure: no I/O, no clock (the ledger takes one). Each ``choose()`` counts a pull; ``reward()`` arrives
later, when a client sends feedback for a request id that :class:`FeedbackLedger` remembered. Many
pulls never get a reward, so the means are over rewarded requests only: ``pulls`` and ``rewards``
(the feedback count) are both kept and reported.

Neither class is thread-safe: call them from the event loop, as the routing layer does.
"""

from __future__ import annotations

import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from modelserve.errors import InvalidInput


class _Bandit:
    """Per-arm counts and the state/restore/summary both bandits share."""

    kind = ""

    def __init__(self, arms: int, rng: random.Random | None) -> None:
        if arms < 1:
            raise ValueError(f"a bandit needs at least 1 arm, got {arms}")
        self._rng = rng if rng is not None else random.Random()
        self._pulls = [0] * arms
        self._rewards = [0] * arms  # feedback count
        self._sums = [0.0] * arms  # sum of the reward values

    @property
    def arms(self) -> int:
        return len(self._pulls)

    def reward(self, arm: int, value: float) -> None:
        """Record feedback ``value`` for ``arm``. Raises InvalidInput for an unknown arm or a bad value."""
        if isinstance(arm, bool) or not isinstance(arm, int) or not 0 <= arm < self.arms:
            raise InvalidInput(f"bandit arm must be an integer from 0 to {self.arms - 1}, got {arm!r}")
        self._check(value)
        self._rewards[arm] += 1
        self._sums[arm] += float(value)

    def _check(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInput(f"reward must be a finite number, got {value!r}")

    def summary(self) -> list[dict[str, float | int]]:
        """Per arm: ``pulls``, ``rewards`` (how many got feedback) and ``mean_reward`` (0 without any)."""
        return [
            {"pulls": p, "rewards": n, "mean_reward": s / n if n else 0.0}
            for p, n, s in zip(self._pulls, self._rewards, self._sums, strict=True)
        ]

    def state(self) -> dict[str, Any]:
        """The counts as JSON-able data, for :meth:`restore` after a restart."""
        return {
            "kind": self.kind,
            "arms": self.arms,
            "pulls": list(self._pulls),
            "rewards": list(self._rewards),
            "reward_sums": list(self._sums),
        }

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Take the counts from ``state``; False, changing nothing, when it is for another kind or
        number of arms, or malformed. Never raises: stored state may come from an older release."""
        if not isinstance(state, Mapping) or state.get("kind") != self.kind or state.get("arms") != self.arms:
            return False
        pulls, rewards, sums = state.get("pulls"), state.get("rewards"), state.get("reward_sums")
        columns = (pulls, rewards, sums)
        if not all(isinstance(c, list) and len(c) == self.arms for c in columns):
            return False
        assert isinstance(pulls, list) and isinstance(rewards, list) and isinstance(sums, list)  # for mypy
        if not all(
            _count(p) and _count(n) and self._valid_sum(s, n) for p, n, s in zip(pulls, rewards, sums, strict=True)
        ):
            return False
        self._pulls, self._rewards, self._sums = list(pulls), list(rewards), [float(s) for s in sums]
        return True

    def _valid_sum(self, total: object, count: int) -> bool:
        return isinstance(total, int | float) and not isinstance(total, bool) and math.isfinite(total)

    def _pick(self, candidates: list[int]) -> int:
        arm = candidates[0] if len(candidates) == 1 else self._rng.choice(candidates)
        self._pulls[arm] += 1
        return arm


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class EpsilonGreedy(_Bandit):
    """With probability ``epsilon`` a uniformly random arm, else the best mean reward so far.

    Arms without any feedback come first (at random among them), so that every arm is measured
    before one is preferred; ties between the best means are broken at random. Rewards may be any
    finite number (a revenue, a rating), not just 0/1.
    """

    kind = "epsilon_greedy"

    def __init__(self, arms: int, epsilon: float, rng: random.Random | None = None) -> None:
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be from 0 to 1, got {epsilon!r}")
        super().__init__(arms, rng)
        self.epsilon = epsilon

    def choose(self) -> int:
        """The arm for the next request; counts it as a pull."""
        if self.epsilon > 0 and self._rng.random() < self.epsilon:
            return self._pick(list(range(self.arms)))
        unrewarded = [i for i, n in enumerate(self._rewards) if n == 0]
        if unrewarded:
            return self._pick(unrewarded)
        means = [s / n for s, n in zip(self._sums, self._rewards, strict=True)]
        best = max(means)
        return self._pick([i for i, m in enumerate(means) if m == best])


class Thompson(_Bandit):
    """Thompson sampling, Beta-Bernoulli: each arm's success rate has the posterior
    Beta(1 + sum(r), 1 + sum(1 - r)), and the arm whose sample is highest is chosen.

    Rewards must be in [0, 1] (a click, a conversion; fractions count as partial successes).
    """

    kind = "thompson"

    def __init__(self, arms: int, rng: random.Random | None = None) -> None:
        super().__init__(arms, rng)

    def choose(self) -> int:
        """The arm for the next request; counts it as a pull."""
        draws = [self._rng.betavariate(a, b) for a, b in self._posteriors()]
        best = max(draws)
        return self._pick([i for i, d in enumerate(draws) if d == best])

    def summary(self) -> list[dict[str, float | int]]:
        """As the base summary, plus each arm's posterior ``alpha`` and ``beta``."""
        rows = super().summary()
        for row, (alpha, beta) in zip(rows, self._posteriors(), strict=True):
            row["alpha"], row["beta"] = alpha, beta
        return rows

    def _posteriors(self) -> list[tuple[float, float]]:
        return [(1.0 + s, 1.0 + n - s) for s, n in zip(self._sums, self._rewards, strict=True)]

    def _check(self, value: float) -> None:
        super()._check(value)
        if not 0 <= value <= 1:
            raise InvalidInput(f"a Thompson sampling reward must be from 0 to 1 (success rate), got {value!r}")

    def _valid_sum(self, total: object, count: int) -> bool:
        return super()._valid_sum(total, count) and isinstance(total, int | float) and 0 <= total <= count


class FeedbackLedger:
    """Which arm answered a request, kept until its feedback arrives (or ``ttl_s`` seconds pass).

    At most ``capacity`` entries; past that the oldest goes first. Every operation is O(1)
    (amortised: expired entries are dropped from the old end as new ones arrive).
    """

    __slots__ = ("_capacity", "_clock", "_entries", "_ttl_s")

    def __init__(
        self, capacity: int = 100_000, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if capacity < 1 or not ttl_s > 0:
            raise ValueError(f"ledger capacity must be >= 1 and ttl_s > 0, got {capacity} and {ttl_s}")
        self._capacity, self._ttl_s, self._clock = capacity, ttl_s, clock
        self._entries: OrderedDict[str, tuple[float, int]] = OrderedDict()  # id -> (expires at, arm), oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, request_id: str, arm: int) -> None:
        """Note that ``arm`` answered ``request_id`` (again: the newer arm wins and the ttl restarts)."""
        now = self._clock()
        self._entries[request_id] = (now + self._ttl_s, arm)
        self._entries.move_to_end(request_id)
        while self._entries:
            expires, _ = next(iter(self._entries.values()))
            if expires > now and len(self._entries) <= self._capacity:
                break
            self._entries.popitem(last=False)

    def take(self, request_id: str) -> int | None:
        """The arm that answered ``request_id``, once; None when unknown, expired or already taken."""
        entry = self._entries.pop(request_id, None)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]
