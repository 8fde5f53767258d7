"""Choosing what to unload: idle versions, and the least recently used ones a budget needs gone."""

from __future__ import annotations

from dataclasses import dataclass

from modelserve.core.residency import evictions, idle


@dataclass
class V:
    name: str
    last_used: float
    memory: int
    inflight: int = 0


def test_evictions_take_the_least_recently_used_until_the_budget_holds() -> None:
    loaded = [V("new", 30, 50), V("old", 10, 50), V("mid", 20, 50)]
    assert [v.name for v in evictions(loaded, needed=40, budget=150)] == ["old"]
    assert [v.name for v in evictions(loaded, needed=120, budget=150)] == ["old", "mid", "new"]
    assert evictions(loaded, needed=0, budget=150) == []


def test_versions_serving_a_request_are_never_chosen() -> None:
    loaded = [V("busy", 0, 100, inflight=1), V("free", 5, 10)]
    assert [v.name for v in evictions(loaded, needed=50, budget=100)] == ["free"]
    assert [v.name for v in idle(loaded, now=100, idle_for=10)] == ["free"]
    assert idle(loaded, now=10, idle_for=10) == []
