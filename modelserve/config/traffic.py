"""A model's ``traffic:`` section: which versions (or models) answer its requests, and in what share.

The same document arrives from ``config.yaml`` and, as JSON, from the admin API; both go through
:func:`parse_traffic`, and :meth:`TrafficPolicy.to_dict` gives it back (``parse_traffic(p.to_dict(),
w) == p``). Only the rules live here; routing/ (split, bandit, canary, shadow) applies them.

.. code-block:: yaml

    traffic:
      policy: split                 # split | epsilon_greedy | thompson | canary | none (shadow only; may be omitted)
      variants:                     # split (>= 1) and bandits (>= 2)
        - {name: control, version: 1, weight: 90}         # weight: split only, relative, >= 0, one > 0
        - {name: treatment, version: 2, weight: 10}       # or label: canary, or model: other-model (+ version/label)
      sticky: {header: x-user-id}   # split and canary: the same key keeps its variant; and/or {parameter: user_id}
      epsilon: 0.1                  # epsilon_greedy only, from 0 to 1
      canary:                       # policy canary only; its variants are "stable" and "candidate"
        stable: 1                   # a version number, or {version: 1} / {label: stable} / {model: m, version: 3}
        candidate: 2
        steps: [0.05, 0.25, 0.5, 1.0]   # candidate share per step: strictly increasing, each in (0, 1]
        window_s: 60                # the sliding window the two arms are compared over (> 0)
        min_requests: 20            # per arm in the window before judging (1 to 50000)
        max_error_rate_increase: 0.05   # roll back when candidate - stable error rate exceeds it (0 to 1)
        max_p99_ratio: 2.0          # roll back when candidate p99 > ratio * stable p99 (>= 1) ...
        min_p99_s: 0.005            # ... and candidate p99 > this (>= 0): sub-millisecond noise is ignored
        promote_after_s: 300        # healthy this long at a step -> the next one (>= 0); 0: never step by itself
      shadow: {target: {version: 3}, share: 1.0, rtol: 1.0e-5, atol: 1.0e-8}   # target may be a bare version

A target with neither ``version`` nor ``label`` is the default version of its model; without
``model`` it is the model the policy belongs to.

Every key is checked: unknown keys, keys that the policy does not use (``epsilon`` with ``split``,
``weight`` on a bandit's variant) and booleans where numbers belong are errors, and every message
names the file (``where``), the key path from ``traffic`` and the value.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelserve.errors import ConfigError
from modelserve.types import VERSION_LABEL

POLICIES = ("split", "epsilon_greedy", "thompson", "canary", "none")
# the most requests the canary judge keeps per arm (routing/canary.py): more could never be seen
MAX_MIN_REQUESTS = 50_000
MAX_VERSION = 10**18 - 1  # 18 digits, as in repository/layout.py
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
# config/ may not import protocol/ or repository/: the same rule as their MODEL_NAME (plus no "..")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
# a key that is both an HTTP header name and a gRPC ASCII metadata key ("-bin" keys carry bytes)
_STICKY_HEADER = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,127}")


@dataclass(frozen=True, slots=True)
class Target:
    """Which model version answers: ``model`` None is the policy's own model; at most one of
    ``version`` / ``label``, and neither means that model's default version."""

    model: str | None = None
    version: int | None = None
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        fields = (("model", self.model), ("version", self.version), ("label", self.label))
        return {key: value for key, value in fields if value is not None}


@dataclass(frozen=True, slots=True)
class Variant:
    name: str  # unique within the policy; shown in responses and metric labels
    target: Target
    weight: float = 1.0  # split only: relative to the other variants' weights


@dataclass(frozen=True, slots=True)
class Sticky:
    """Where a request's sticky key comes from (the header first when both are set)."""

    header: str | None = None  # lower case: HTTP header or gRPC metadata key
    parameter: str | None = None  # v2 inference request parameter


@dataclass(frozen=True, slots=True)
class Canary:
    stable: Target
    candidate: Target
    steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)  # candidate share per step
    window_s: float = 60.0
    min_requests: int = 20  # per arm in the window before judging
    max_error_rate_increase: float = 0.05
    max_p99_ratio: float = 2.0
    min_p99_s: float = 0.005
    promote_after_s: float = 300.0  # 0: never step automatically


@dataclass(frozen=True, slots=True)
class Shadow:
    """Mirror ``share`` of the requests to ``target``; its answers are compared, never returned."""

    target: Target
    share: float = 1.0
    rtol: float = 1e-5
    atol: float = 1e-8


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    kind: str  # one of POLICIES
    variants: tuple[Variant, ...] = ()  # canary: ("stable", "candidate"), derived from ``canary``
    sticky: Sticky | None = None  # split and canary only
    epsilon: float = 0.1  # epsilon_greedy only
    canary: Canary | None = None
    shadow: Shadow | None = None

    def __post_init__(self) -> None:
        # a canary's two arms are variants too, so that responses and metrics name them the same way
        if self.kind == "canary" and self.canary is not None and not self.variants:
            arms = (Variant("stable", self.canary.stable), Variant("candidate", self.canary.candidate))
            object.__setattr__(self, "variants", arms)

    def to_dict(self) -> dict[str, Any]:
        """The policy as the JSON/YAML document :func:`parse_traffic` reads (defaults included)."""
        doc: dict[str, Any] = {"policy": self.kind}
        if self.kind in ("split", "epsilon_greedy", "thompson"):
            doc["variants"] = [_variant_dict(v, weight=self.kind == "split") for v in self.variants]
        if self.sticky is not None:
            fields = (("header", self.sticky.header), ("parameter", self.sticky.parameter))
            doc["sticky"] = {key: value for key, value in fields if value is not None}
        if self.kind == "epsilon_greedy":
            doc["epsilon"] = self.epsilon
        if self.canary is not None:
            c = self.canary
            doc["canary"] = {
                "stable": c.stable.to_dict(),
                "candidate": c.candidate.to_dict(),
                "steps": list(c.steps),
                "window_s": c.window_s,
                "min_requests": c.min_requests,
                "max_error_rate_increase": c.max_error_rate_increase,
                "max_p99_ratio": c.max_p99_ratio,
                "min_p99_s": c.min_p99_s,
                "promote_after_s": c.promote_after_s,
            }
        if self.shadow is not None:
            s = self.shadow
            doc["shadow"] = {"target": s.target.to_dict(), "share": s.share, "rtol": s.rtol, "atol": s.atol}
        return doc


def _variant_dict(variant: Variant, *, weight: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": variant.name, **variant.target.to_dict()}
    if weight:
        doc["weight"] = variant.weight
    return doc


_KEYS = ("policy", "variants", "sticky", "epsilon", "canary", "shadow")
# policy -> (keys it requires, keys it allows besides "policy" and "shadow")
_RULES: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    "split": (frozenset({"variants"}), frozenset({"variants", "sticky"})),
    "epsilon_greedy": (frozenset({"variants"}), frozenset({"variants", "epsilon"})),
    "thompson": (frozenset({"variants"}), frozenset({"variants"})),
    "canary": (frozenset({"canary"}), frozenset({"canary", "sticky"})),
    "none": (frozenset({"shadow"}), frozenset()),
}
_CANARY_KEYS = (
    "stable", "candidate", "steps", "window_s", "min_requests", "max_error_rate_increase", "max_p99_ratio",
    "min_p99_s", "promote_after_s",
)  # fmt: skip


def parse_traffic(raw: object, where: str) -> TrafficPolicy:
    """The ``traffic`` document ``raw`` (from YAML or JSON) as a policy. ``where`` names its source
    (a file, "admin API") and starts every message; key paths start at ``traffic``. Raises ConfigError."""
    doc = _mapping(raw, where, "traffic")
    _known(doc, _KEYS, where, "traffic")
    kind = _kind(doc, where)
    required, allowed = _RULES[kind]
    missing = sorted(required - set(doc))
    if missing:
        raise ConfigError(f"{where}: traffic.policy {kind!r} requires traffic.{missing[0]}")
    unused = sorted(set(doc) - allowed - {"policy", "shadow"})
    if unused:
        raise ConfigError(f"{where}: traffic.{unused[0]} is not used by policy {kind!r}, got {doc[unused[0]]!r}")
    canary = _canary(doc["canary"], where) if "canary" in doc else None
    variants = _variants(doc["variants"], kind, where) if "variants" in doc else ()
    return TrafficPolicy(
        kind=kind,
        variants=variants,
        sticky=_sticky(doc["sticky"], where) if "sticky" in doc else None,
        epsilon=_number(doc.get("epsilon", 0.1), where, "traffic.epsilon", "from 0 to 1", lambda x: 0 <= x <= 1),
        canary=canary,
        shadow=_shadow(doc["shadow"], where) if "shadow" in doc else None,
    )


def _kind(doc: Mapping[str, Any], where: str) -> str:
    kind = doc.get("policy")
    if kind is None:
        if "shadow" not in doc:
            raise ConfigError(
                f"{where}: traffic.policy is required (one of {', '.join(POLICIES)}) unless only shadow is given"
            )
        return "none"
    if kind not in POLICIES:
        raise ConfigError(f"{where}: traffic.policy must be one of {', '.join(POLICIES)}, got {kind!r}")
    return str(kind)


def _variants(value: object, kind: str, where: str) -> tuple[Variant, ...]:
    least = 1 if kind == "split" else 2
    if not isinstance(value, list) or len(value) < least:
        raise ConfigError(
            f"{where}: traffic.variants must be a list of at least {least} variant(s) for {kind}, got {value!r}"
        )
    variants = tuple(_variant(item, kind, where, f"traffic.variants[{i}]") for i, item in enumerate(value))
    seen: set[str] = set()
    for i, variant in enumerate(variants):
        if variant.name in seen:
            raise ConfigError(f"{where}: traffic.variants[{i}].name {variant.name!r} is used by an earlier variant")
        seen.add(variant.name)
    if kind == "split" and not any(v.weight > 0 for v in variants):
        raise ConfigError(
            f"{where}: traffic.variants: at least one weight must be > 0, got {[v.weight for v in variants]}"
        )
    return variants


def _variant(value: object, kind: str, where: str, path: str) -> Variant:
    doc = _mapping(value, where, path)
    keys = ("name", "model", "version", "label", "weight") if kind == "split" else ("name", "model", "version", "label")
    _known(doc, keys, where, path)
    name = doc.get("name")
    if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: {path}.name must be 1-64 letters, digits, '_', '.', '-' starting with a letter or digit, "
            f"got {name!r}{' (quote on/off/yes/no in YAML)' if isinstance(name, bool) else ''}"
        )
    target = _target_fields(doc, where, path)
    weight = _number(doc.get("weight", 1.0), where, f"{path}.weight", ">= 0", lambda x: x >= 0)
    return Variant(name=name, target=target, weight=weight)


def _target(value: object, where: str, path: str) -> Target:
    """A bare version number, or a mapping of model / version / label."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Target(version=_version(value, where, path))
    doc = _mapping(value, where, f"{path} (a version number or a mapping of model, version, label)")
    _known(doc, ("model", "version", "label"), where, path)
    return _target_fields(doc, where, path)


def _target_fields(doc: Mapping[str, Any], where: str, path: str) -> Target:
    model, version, label = doc.get("model"), doc.get("version"), doc.get("label")
    if model is not None and not (isinstance(model, str) and _MODEL_NAME.fullmatch(model) and ".." not in model):
        raise ConfigError(
            f"{where}: {path}.model must be a model name (1-128 letters, digits, '_', '.', '-'), got {model!r}"
        )
    if version is not None and label is not None:
        raise ConfigError(f"{where}: {path} names both version {version!r} and label {label!r}; give one")
    if label is not None and not (isinstance(label, str) and VERSION_LABEL.fullmatch(label)):
        raise ConfigError(
            f"{where}: {path}.label must be 1-64 letters, digits, '_', '.', '-' and not a number, got {label!r}"
        )
    return Target(
        model=model, version=None if version is None else _version(version, where, f"{path}.version"), label=label
    )


def _version(value: object, where: str, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise ConfigError(f"{where}: {path} must be a version number >= 1, got {value!r}")
    return value


def _sticky(value: object, where: str) -> Sticky:
    doc = _mapping(value, where, "traffic.sticky")
    _known(doc, ("header", "parameter"), where, "traffic.sticky")
    header, parameter = doc.get("header"), doc.get("parameter")
    if header is None and parameter is None:
        raise ConfigError(f"{where}: traffic.sticky needs a header and/or a parameter, got {value!r}")
    if header is not None:
        if (
            not isinstance(header, str)
            or not _STICKY_HEADER.fullmatch(header.lower())
            or header.lower().endswith("-bin")
        ):
            raise ConfigError(
                f"{where}: traffic.sticky.header must be a header name of 1-128 letters, digits, '_', '.', '-' "
                f"(not ending in -bin), got {header!r}"
            )
        header = header.lower()
    if parameter is not None and not (isinstance(parameter, str) and 0 < len(parameter) <= 128):
        raise ConfigError(
            f"{where}: traffic.sticky.parameter must be a parameter name of 1-128 characters, got {parameter!r}"
        )
    return Sticky(header=header, parameter=parameter)


def _canary(value: object, where: str) -> Canary:
    doc = _mapping(value, where, "traffic.canary")
    _known(doc, _CANARY_KEYS, where, "traffic.canary")
    for key in ("stable", "candidate"):
        if key not in doc:
            raise ConfigError(f"{where}: traffic.canary.{key} is required (a version number or a target mapping)")
    stable = _target(doc["stable"], where, "traffic.canary.stable")
    candidate = _target(doc["candidate"], where, "traffic.canary.candidate")
    if stable == candidate:
        raise ConfigError(
            f"{where}: traffic.canary.candidate must differ from stable, got {doc['candidate']!r} for both"
        )
    default = Canary(stable, candidate)

    def num(key: str, expect: str, ok: Callable[[float], bool]) -> float:
        return _number(doc.get(key, getattr(default, key)), where, f"traffic.canary.{key}", expect, ok)

    min_requests = doc.get("min_requests", default.min_requests)
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or not 1 <= min_requests <= MAX_MIN_REQUESTS:
        raise ConfigError(
            f"{where}: traffic.canary.min_requests must be an integer from 1 to {MAX_MIN_REQUESTS}, "
            f"got {min_requests!r}"
        )
    return Canary(
        stable=stable,
        candidate=candidate,
        steps=_steps(doc.get("steps", list(default.steps)), where),
        window_s=num("window_s", "> 0", lambda x: x > 0),
        min_requests=min_requests,
        max_error_rate_increase=num("max_error_rate_increase", "from 0 to 1", lambda x: 0 <= x <= 1),
        max_p99_ratio=num("max_p99_ratio", ">= 1", lambda x: x >= 1),
        min_p99_s=num("min_p99_s", ">= 0", lambda x: x >= 0),
        promote_after_s=num("promote_after_s", ">= 0", lambda x: x >= 0),
    )


def _steps(value: object, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: traffic.canary.steps must be a non-empty list of shares, got {value!r}")
    steps = [
        _number(s, where, f"traffic.canary.steps[{i}]", "> 0 and <= 1", lambda x: 0 < x <= 1)
        for i, s in enumerate(value)
    ]
    for i in range(1, len(steps)):
        if steps[i] <= steps[i - 1]:
            raise ConfigError(
                f"{where}: traffic.canary.steps must be strictly increasing, got {value!r} "
                f"(steps[{i}] = {value[i]!r} after {value[i - 1]!r})"
            )
    return tuple(steps)


def _shadow(value: object, where: str) -> Shadow:
    doc = _mapping(value, where, "traffic.shadow")
    _known(doc, ("target", "share", "rtol", "atol"), where, "traffic.shadow")
    if "target" not in doc:
        raise ConfigError(f"{where}: traffic.shadow.target is required (a version number or a target mapping)")
    return Shadow(
        target=_target(doc["target"], where, "traffic.shadow.target"),
        share=_number(doc.get("share", 1.0), where, "traffic.shadow.share", "from 0 to 1", lambda x: 0 <= x <= 1),
        rtol=_number(doc.get("rtol", 1e-5), where, "traffic.shadow.rtol", ">= 0", lambda x: x >= 0),
        atol=_number(doc.get("atol", 1e-8), where, "traffic.shadow.atol", ">= 0", lambda x: x >= 0),
    )


def _mapping(value: object, where: str, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {path} must be a mapping, got {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: keys of {path} must be strings, got {bad!r}")
    return value


def _known(doc: Mapping[str, Any], keys: tuple[str, ...], where: str, path: str) -> None:
    unknown = sorted(set(doc) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: {path} has unknown key(s) {unknown}; expected some of {', '.join(keys)}")


def _number(value: object, where: str, path: str, expect: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a finite float for which ``ok`` holds; booleans are not numbers. Raises ConfigError."""
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an integer beyond float range, from JSON
            number = float(value)
    if not (math.isfinite(number) and ok(number)):
        raise ConfigError(f"{where}: {path} must be a number {expect}, got {value!r}")
    return number
