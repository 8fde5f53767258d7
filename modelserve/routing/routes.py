"""One model name's traffic policy at run time: the deciders it needs and what it has seen.

A :class:`Route` is built from a :class:`~modelserve.config.traffic.TrafficPolicy` (config.yaml's
``traffic:`` or an override set through the admin API) and lives on the event loop thread, so its
counters need no lock. It chooses a variant for a request (:meth:`Route.choose`), hears how the
request ended (:meth:`Route.finished`), and describes itself for the admin API, metrics and the
state kept in the registry database (:meth:`Route.state`, :meth:`Route.restore`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from typing import Any

from modelserve.config.traffic import Target, TrafficPolicy, Variant
from modelserve.routing.bandit import EpsilonGreedy, FeedbackLedger, Thompson
from modelserve.routing.canary import CanaryJudge
from modelserve.routing.shadow import ShadowStats
from modelserve.routing.split import WeightedSplit

STABLE, CANDIDATE = 0, 1  # a canary's variants, in this order

HeaderLookup = Callable[[str], str | None]


class Route:
    __slots__ = (
        "bandit", "errors", "judge", "ledger", "name", "policy", "requests", "rollbacks", "shadow",
        "source", "split", "variants",
    )  # fmt: skip

    def __init__(self, name: str, policy: TrafficPolicy, source: str) -> None:
        """``source``: "config" (config.yaml) or "override" (set through the admin API)."""
        self.name = name
        self.policy = policy
        self.source = source
        self.split: WeightedSplit | None = None
        self.bandit: EpsilonGreedy | Thompson | None = None
        self.ledger: FeedbackLedger | None = None
        self.judge: CanaryJudge | None = None
        if policy.kind == "canary":
            assert policy.canary is not None
            self.variants: tuple[Variant, ...] = (
                Variant("stable", policy.canary.stable),
                Variant("candidate", policy.canary.candidate),
            )
            self.judge = CanaryJudge(policy.canary)
        elif policy.kind == "none":  # shadow only: everything goes where it would anyway
            self.variants = (Variant("primary", Target()),)
        else:
            self.variants = policy.variants
        if policy.kind == "split":
            self.split = WeightedSplit([v.weight for v in self.variants], salt=name)
        elif policy.kind == "epsilon_greedy":
            self.bandit = EpsilonGreedy(len(self.variants), policy.epsilon)
        elif policy.kind == "thompson":
            self.bandit = Thompson(len(self.variants))
        if self.bandit is not None:
            self.ledger = FeedbackLedger()
        self.shadow = ShadowStats() if policy.shadow is not None else None
        self.requests = [0] * len(self.variants)  # answered, by variant
        self.errors = [0] * len(self.variants)  # failed with a server error, by variant
        self.rollbacks = 0

    def sticky_key(self, parameters: Mapping[str, Any], header: HeaderLookup) -> str | None:
        """The request's sticky key (header first, then parameter), or None."""
        sticky = self.policy.sticky
        if sticky is None:
            return None
        if sticky.header is not None:
            value = header(sticky.header)
            if value:
                return value
        if sticky.parameter is not None and parameters:
            value = parameters.get(sticky.parameter)
            if value is not None and not isinstance(value, bool):
                return str(value)
        return None

    def choose(self, key: str | None) -> int:
        """The variant (index) this request goes to."""
        if self.split is not None:
            return self.split.choose(key)
        if self.bandit is not None:
            return self.bandit.choose()
        if self.judge is not None:
            return CANDIDATE if _unit(self.name, key) < self.judge.share else STABLE
        return 0

    def finished(self, arm: int, server_error: bool | None, seconds: float) -> None:
        """How a routed request ended: ``server_error`` None for a client error (the request was
        bad, not the variant: it counts for neither the canary nor the error figures)."""
        if server_error is None:
            return
        self.requests[arm] += 1
        if server_error:
            self.errors[arm] += 1
        if self.judge is not None:
            self.judge.observe("candidate" if arm == CANDIDATE else "stable", not server_error, seconds)

    # -- what it says about itself ---------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The live figures the admin API shows (JSON-able)."""
        doc: dict[str, Any] = {
            "variants": [
                {"name": v.name, "target": _target(v.target), "requests": n, "server_errors": e}
                for v, n, e in zip(self.variants, self.requests, self.errors, strict=True)
            ]
        }
        if self.bandit is not None:
            doc["bandit"] = [
                {"name": v.name, **arm} for v, arm in zip(self.variants, self.bandit.summary(), strict=True)
            ]
        if self.judge is not None:
            doc["canary"] = {
                "status": self.judge.status,
                "share": self.judge.share,
                "step": self.judge.step,
                "reason": self.judge.reason,
                "window": self.judge.window(),
                "rollbacks": self.rollbacks,
            }
        if self.shadow is not None:
            doc["shadow"] = self.shadow.to_dict()
        return doc

    def state(self) -> dict[str, Any]:
        """What survives a restart: the learnt bandit and the canary's progress, with the policy
        they belong to (a different policy starts afresh)."""
        doc: dict[str, Any] = {"policy": self.policy.to_dict()}
        if self.bandit is not None:
            doc["bandit"] = self.bandit.state()
        if self.judge is not None:
            doc["canary"] = self.judge.state()
        return doc

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Take back :meth:`state` if it belongs to this policy; False (nothing taken) otherwise."""
        if state.get("policy") != self.policy.to_dict():
            return False
        restored = False
        if self.bandit is not None and isinstance(state.get("bandit"), Mapping):
            restored = self.bandit.restore(state["bandit"]) or restored
        if self.judge is not None and isinstance(state.get("canary"), Mapping):
            restored = self.judge.restore(state["canary"]) or restored
        return restored


def _unit(salt: str, key: str | None) -> float:
    """A number in [0, 1): fixed for a key (so a sticky user stays on one side), random without."""
    if key is None:
        return random.random()
    digest = hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53  # 53 bits: exactly representable, below 1


def _target(target: Target) -> dict[str, Any]:
    return {k: v for k, v in (("model", target.model), ("version", target.version), ("label", target.label)) if v}
