"""Per-key rate limits: a token bucket per API key id (issue #12).

A key with ``rate_limit`` r and ``burst`` b may make b requests at once and r per second on
average: its bucket holds up to b tokens, refills at r tokens/s, and each request takes one. A
request that finds less than one token is refused with the time until one is there. Keys
without a limit have no bucket and cost one dict lookup.

``admit`` is O(1): a dict lookup and a little arithmetic under one lock (the event loop and the
gRPC server may call it from different threads; the lock is held for well under a microsecond).
Buckets live in this process: with ``--workers N``, each worker admits a key's rate on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping


class Bucket:
    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)  # a new bucket starts full
        self.at = now

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one is there (nothing taken)."""
        tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class RateLimiter:
    """Token buckets by key id; ``configure`` sets the limits, ``admit`` spends them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}

    def configure(self, limits: Mapping[str, tuple[float, int]]) -> None:
        """Limits by key id, ``(rate, burst)``. A key whose limit is unchanged keeps its bucket
        (its spent tokens), a key not named has no limit any more."""
        now = self._clock()
        with self._lock:
            old = self._buckets
            buckets: dict[str, Bucket] = {}
            for key_id, (rate, burst) in limits.items():
                kept = old.get(key_id)
                same = kept is not None and kept.rate == rate and kept.burst == burst
                buckets[key_id] = kept if same and kept is not None else Bucket(rate, burst, now)
            self._buckets = buckets

    def admit(self, key_id: str) -> float:
        """0.0 if key ``key_id`` may make a request now (one token spent), else the seconds to wait."""
        bucket = self._buckets.get(key_id)
        if bucket is None:
            return 0.0
        with self._lock:
            return bucket.take(self._clock())

    def limit(self, key_id: str) -> tuple[float, int] | None:
        """``(rate, burst)`` of key ``key_id``, None when it has no limit."""
        bucket = self._buckets.get(key_id)
        return None if bucket is None else (bucket.rate, bucket.burst)
