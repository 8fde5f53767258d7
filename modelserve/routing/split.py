"""Weighted split of requests between variants (A/B tests, canary shares), sticky by request key.

Pure: no I/O, no clock. A request with a key (a user id from a header or parameter) is placed by a
hash of ``salt`` and the key, so it keeps its variant for as long as the weights stay the same, on
every server replica, across restarts. Keys are uniform in [0, 1) and each variant owns an interval
of that line in weight order; when the weights change, only the keys near the moved boundaries
switch (from 5% to 25% for the last variant: the keys in [0.75, 0.95) move to it, no others).
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Sequence

_53_BITS = 2.0**-53


class WeightedSplit:
    """Chooses an arm index with probability proportional to its weight.

    ``weights`` are relative (any scale), each finite and >= 0, and at least one > 0; an arm of
    weight 0 is never chosen. ``salt`` separates the sticky placement of one policy from another's
    (use the model name), so a key in one model's 10% is not in every model's 10%. Raises ValueError.
    """

    __slots__ = ("_bounds", "_salt", "_shares")

    def __init__(self, weights: Sequence[float], salt: str) -> None:
        if not weights or any(not math.isfinite(w) or w < 0 for w in weights) or not sum(weights) > 0:
            raise ValueError(f"split weights must be finite, >= 0 and not all 0, got {list(weights)}")
        total = math.fsum(weights)
        self._shares = tuple(w / total for w in weights)
        bounds, running = [], 0.0
        for share in self._shares:
            running += share
            bounds.append(running)
        # rounding must not leave a sliver of [0, 1) to nobody, nor give one to a trailing 0-weight arm
        last = max(i for i, w in enumerate(weights) if w > 0)
        self._bounds = tuple(bounds[:last]) + (1.0,) * (len(bounds) - last)
        self._salt = salt.encode("utf-8", "surrogatepass") + b"\0"

    @property
    def shares(self) -> tuple[float, ...]:
        """Each arm's share of the traffic (the normalised weights)."""
        return self._shares

    def choose(self, key: str | None, rng: random.Random | None = None) -> int:
        """The arm for a request: by ``key`` when given (the same key, the same arm), else drawn at
        random from ``rng`` (the ``random`` module's generator when None)."""
        point = self.point(key) if key is not None else (rng or random).random()
        return bisect_right(self._bounds, point)

    def point(self, key: str) -> float:
        """Where ``key`` falls in [0, 1): the top 53 bits of a BLAKE2b hash of the salt and the key."""
        digest = hashlib.blake2b(self._salt + key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return (int.from_bytes(digest, "big") >> 11) * _53_BITS
