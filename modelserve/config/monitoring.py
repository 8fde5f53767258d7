"""A model's ``monitoring:`` section: how its live inputs are compared with its reference profile.

Monitoring runs for every version that has a reference profile in the registry database
(``modelserve monitor profile``); this section tunes it, or turns it off::

    monitoring:
      window: 500             # the last N rows are compared with the reference
      min_rows: 200           # rows seen before the first check
      check_every: 100        # new rows between two checks
      p_value: 0.01           # family-wise significance of one check (all features together)
      psi_threshold: 0.25     # a feature whose population stability index exceeds it has drifted
      multivariate: on        # also a classifier two-sample test over all numeric features
      outlier_quantile: 0.999 # rows farther than this quantile of the reference are outliers
      min_interval_s: 5.0     # at most one check per this many seconds (a check costs 15-50 ms)

``monitoring: off`` turns it off; ``on`` (or leaving the section out) uses the defaults above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelserve.errors import ConfigError

_KEYS = (
    "window", "min_rows", "check_every", "p_value", "psi_threshold", "multivariate", "outlier_quantile",
    "min_interval_s",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MonitoringConfig:
    enabled: bool = True
    window: int = 500
    min_rows: int = 200
    check_every: int = 100
    p_value: float = 0.01
    psi_threshold: float = 0.25
    multivariate: bool = True
    outlier_quantile: float = 0.999
    min_interval_s: float = 5.0


def parse_monitoring(value: object, where: str) -> MonitoringConfig:
    """``on``/``off``/absent, or a mapping of the keys above. Raises ConfigError naming the key."""
    if value is None or value is True or value == "on":
        return MonitoringConfig()
    if value is False or value == "off":
        return MonitoringConfig(enabled=False)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: monitoring must be on, off, or a mapping of {', '.join(_KEYS)}; got {value!r}")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: monitoring has unknown key(s) {unknown}; expected {', '.join(_KEYS)}")
    default = MonitoringConfig()
    config = MonitoringConfig(
        window=_int(value, "window", where, default.window, minimum=10),
        min_rows=_int(value, "min_rows", where, default.min_rows, minimum=10),
        check_every=_int(value, "check_every", where, default.check_every, minimum=1),
        p_value=_fraction(value, "p_value", where, default.p_value),
        psi_threshold=_number(value, "psi_threshold", where, default.psi_threshold),
        multivariate=_switch(value, "multivariate", where, default.multivariate),
        outlier_quantile=_fraction(value, "outlier_quantile", where, default.outlier_quantile),
        min_interval_s=_seconds(value, "min_interval_s", where, default.min_interval_s),
    )
    if config.min_rows > config.window:
        raise ConfigError(f"{where}: monitoring.min_rows ({config.min_rows}) must be <= window ({config.window})")
    return config


def _int(doc: Mapping[str, Any], key: str, where: str, default: int, *, minimum: int) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: monitoring.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(doc: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}: monitoring.{key} must be a number > 0, got {value!r}")
    return float(value)


def _seconds(doc: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: monitoring.{key} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _fraction(doc: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = _number(doc, key, where, default)
    if value >= 1:
        raise ConfigError(f"{where}: monitoring.{key} must be between 0 and 1 (exclusive), got {value!r}")
    return value


def _switch(doc: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = doc.get(key, default)
    if value is True or value == "on":
        return True
    if value is False or value == "off":
        return False
    raise ConfigError(f"{where}: monitoring.{key} must be on or off, got {value!r}")
