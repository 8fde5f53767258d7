"""Version policy: a pure function from the versions on disk to the versions to serve."""

from __future__ import annotations

from collections.abc import Iterable

from modelserve.config.model import VersionPolicy


def select_versions(available: Iterable[int], policy: VersionPolicy) -> list[int]:
    """Versions to serve, ascending. ``specific`` versions missing on disk are simply absent."""
    versions = sorted(set(available))
    if policy.kind == "all":
        return versions
    if policy.kind == "specific":
        return [v for v in versions if v in policy.specific]
    return versions[-policy.latest :] if versions else []
