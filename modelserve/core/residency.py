"""Which loaded versions may stay in memory: lazy loading, idle unloading, a memory budget.

"Serverless" inside one server: with many models and little memory, a model need not be loaded
until it is asked for, may be unloaded after ``idle_unload_s`` without requests, and is evicted
(least recently used first) when loading another would exceed ``memory_budget_bytes``. An
unloaded model is *asleep*: the next request to it waits for its load (at most ``load_wait_s``)
instead of failing. The manager acts; the functions here only choose.

Memory is estimated per version as the growth of the process's resident set while it loaded, and
never less than the size of its files: an estimate (allocators keep freed memory, concurrent loads
blur each other), which is why the budget is a soft limit checked before each load.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar


@dataclass(frozen=True, slots=True)
class Residency:
    lazy: bool = False  # load a model on its first request, not at start-up
    idle_unload_s: float = 0.0  # unload a version unused for this long; 0: never
    memory_budget_bytes: int = 0  # evict least recently used versions to stay under it; 0: no budget
    load_wait_s: float = 60.0  # how long a request waits for an asleep model to load


class Resident(Protocol):
    @property
    def last_used(self) -> float: ...
    @property
    def memory(self) -> int: ...
    @property
    def inflight(self) -> int: ...


R = TypeVar("R", bound=Resident)


def idle(versions: Iterable[R], now: float, idle_for: float) -> list[R]:
    """The versions unused for ``idle_for`` seconds and not serving a request now."""
    return [v for v in versions if not v.inflight and now - v.last_used >= idle_for]


def evictions(versions: Iterable[R], needed: int, budget: int) -> list[R]:
    """Least recently used versions not serving a request, enough (if possible) that the loaded
    ones plus ``needed`` bytes fit in ``budget``; the fewest that do."""
    loaded = list(versions)
    excess = sum(v.memory for v in loaded) + needed - budget
    chosen = []
    for version in sorted((v for v in loaded if not v.inflight), key=lambda v: v.last_used):
        if excess <= 0:
            break
        chosen.append(version)
        excess -= version.memory
    return chosen


def resident_bytes() -> int:
    """The process's resident set size (Linux: /proc/self/statm; elsewhere 0)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
