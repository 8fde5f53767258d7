"""What the dashboard's pages show, gathered from the manager, the router, monitoring, the
registry and the sampler into plain dicts that the templates render (and escape).

Reads of the registry database block: the handlers call :meth:`Views.registry_details` in a
worker thread. Everything else reads state that lives on the event loop and must run there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from modelserve.core.manager import ModelManager, ModelVersion
from modelserve.errors import ModelNotFound
from modelserve.monitoring.service import Monitoring
from modelserve.routing.router import Router
from modelserve.server.dashboard.sampler import Point, Sampler
from modelserve.types import ModelState, Signature

HISTORY_LIMIT = 50


class Registry(Protocol):
    """What the dashboard needs of the model registry (repository/registry/store.py's RegistryStore,
    passed in by bootstrap when the server serves from one)."""

    def versions(self, name: str) -> Sequence[Any]: ...

    def history(self, name: str | None = None, limit: int | None = None) -> Sequence[Any]: ...

    def rollback(self, name: str, *, actor: str, reason: str = "", to_version: int | None = None) -> Any: ...

    def set_stage(self, name: str, version: int, stage: str, *, actor: str, reason: str = "") -> Any: ...


def figures(latest: Point | None) -> dict[str, Any]:
    """A model's current throughput, latency (ms) and error rate; None where nothing was measured."""
    if latest is None:
        return {"rps": None, "p50_ms": None, "p99_ms": None, "error_rate": None}
    return {
        "rps": latest.rps,
        "p50_ms": None if latest.p50 is None else latest.p50 * 1000,
        "p99_ms": None if latest.p99 is None else latest.p99 * 1000,
        "error_rate": latest.error_rate,
    }


def try_body(signature: Signature) -> dict[str, Any]:
    """A v2 inference request for ``signature``: one row of zeros per input (-1 dimensions as 1)."""
    inputs = []
    for spec in signature.inputs:
        shape = [1 if d < 0 else d for d in spec.shape] or [1]
        fill: Any = "" if spec.datatype == "BYTES" else (False if spec.datatype == "BOOL" else 0)
        inputs.append({"name": spec.name, "shape": shape, "datatype": spec.datatype, "data": [fill] * math.prod(shape)})
    return {"inputs": inputs}


class Views:
    def __init__(
        self, manager: ModelManager, router: Router, monitoring: Monitoring, sampler: Sampler, registry: Registry | None
    ) -> None:
        self._manager = manager
        self._router = router
        self._monitoring = monitoring
        self._sampler = sampler
        self.registry = registry

    def overview(self) -> list[dict[str, Any]]:
        """One row per model and graph: versions with state and reason, labels, figures, drift."""
        by_name: dict[str, list[dict[str, Any]]] = {}
        for entry in self._manager.index():
            rows = by_name.setdefault(entry.name, [])
            if entry.version is not None:
                state = entry.state.value if entry.state is not None else ""
                rows.append({"version": entry.version, "state": state, "reason": entry.reason})
            elif entry.reason:
                rows.append({"version": None, "state": ModelState.FAILED.value, "reason": entry.reason})
        return [self._row(name, versions) for name, versions in sorted(by_name.items())]

    def _row(self, name: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
        labels: dict[str, int] = {}
        graph = False
        try:
            model = self._manager.model(name)
            labels = dict(model.labels)
            graph = any(mv.graph for mv in model.versions.values())
        except ModelNotFound:
            pass
        by_version: dict[int, list[str]] = {}
        for label, version in sorted(labels.items()):
            by_version.setdefault(version, []).append(label)
        for row in versions:
            row["labels"] = by_version.get(row["version"], [])
        return {
            "name": name,
            "kind": "graph" if graph else "model",
            "versions": versions,
            "labels": labels,
            "figures": figures(self._sampler.latest(name)),
            "drift": self.drift_status(name),
        }

    def drift_status(self, name: str) -> str:
        """``drifting``, ``ok`` (watched, no drift) or ``-`` (no profiled version is watched)."""
        try:
            watched = self._monitoring.status(name)["versions"]
        except ModelNotFound:
            return "-"
        if not watched:
            return "-"
        return "drifting" if any(w["drift"] for w in watched) else "ok"

    def model(self, name: str) -> dict[str, Any]:
        """The model page's live part: versions, traffic, drift. Raises ModelNotFound."""
        model = self._manager.model(name)
        row = next((r for r in self.overview() if r["name"] == name), None)
        versions = row["versions"] if row is not None else []
        for entry in versions:
            mv = model.versions.get(entry["version"]) if entry["version"] is not None else None
            entry["platform"] = mv.metadata.platform if mv is not None and mv.metadata is not None else ""
            entry["inflight"] = mv.inflight if mv is not None else 0
        return {
            "name": name,
            "kind": row["kind"] if row is not None else "model",
            "versions": versions,
            "figures": row["figures"] if row is not None else figures(None),
            "traffic": self._router.show(name),
            "monitoring": self._monitoring.status(name),
            "drift": row["drift"] if row is not None else "-",
        }

    def try_it(self, name: str) -> dict[str, Any] | None:
        """A request body for the model's default READY version; None when none is READY."""
        model = self._manager.model(name)
        ready = [mv for mv in model.versions.values() if mv.state is ModelState.READY and mv.metadata is not None]
        if not ready:
            return None
        mv: ModelVersion = max(ready, key=lambda v: v.version)
        assert mv.metadata is not None
        return try_body(mv.metadata.signature)

    def registry_details(self, name: str) -> dict[str, Any]:
        """From the registry (blocking): each version's stage, checksums, metadata, lineage, and the
        audit history, newest first. Empty when the server does not serve from a registry."""
        if self.registry is None:
            return {"registry": False, "versions": [], "history": []}
        try:
            versions = list(self.registry.versions(name))
        except ModelNotFound:
            versions = []
        history = list(reversed(self.registry.history(name, HISTORY_LIMIT)))
        return {"registry": True, "versions": versions, "history": history}
