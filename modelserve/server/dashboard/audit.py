"""The audit log of dashboard actions: the registry's, as for the CLI and the admin API.

Traffic changes are audited by the router itself; load and unload are recorded here (the manager
also records the load/unload events it performs when serving from the registry, as the server's).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class AuditStore(Protocol):
    """The part of the registry store (repository/registry/store.py) that appends audit events."""

    def record(self, action: str, name: str, version: int | None, *, actor: str, reason: str = "") -> Any: ...

    def close(self) -> None: ...


class Audit:
    """Records actions in the store ``open_store(True)`` opens (the first time it is needed).
    ``owned``: the store is this object's to close (not the registry the server serves from)."""

    def __init__(self, open_store: Callable[[bool], AuditStore | None], owned: bool) -> None:
        self._open = open_store
        self._owned = owned
        self._store: AuditStore | None = None
        self._lock = threading.Lock()

    async def record(self, action: str, name: str, actor: str, reason: str) -> None:
        """Append ``action`` on model ``name``; a failure is logged (the action itself is done),
        and the action is logged either way."""
        log.info("dashboard: %s of model %r by %s%s", action, name, actor, f": {reason}" if reason else "")
        try:
            await asyncio.to_thread(self._record, action, name, actor, reason)
        except Exception:
            log.exception("could not audit the dashboard's %s of model %r", action, name)

    def _record(self, action: str, name: str, actor: str, reason: str) -> None:
        with self._lock:
            if self._store is None:
                self._store = self._open(True)
            store = self._store
        if store is not None:
            store.record(action, name, None, actor=actor, reason=reason)

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None and self._owned:
            store.close()
