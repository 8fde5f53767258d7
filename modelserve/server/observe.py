"""Counting inference requests at the transport edge: outcome (by the status the client got) and
latency, per model, version and protocol, into the manager's statistics (core/stats.py)."""

from __future__ import annotations

import asyncio
import time

from modelserve.core.manager import ModelManager
from modelserve.errors import ModelServeError
from modelserve.protocol.status import http_status


class Observed:
    """One request being served: call :meth:`done` once with the exception it ended with, or None."""

    __slots__ = ("_manager", "_protocol", "_started", "name", "version")

    def __init__(self, manager: ModelManager, protocol: str, name: str) -> None:
        self._manager = manager
        self._protocol = protocol
        self._started = time.perf_counter()
        self.name = name
        self.version: int | None = None  # set once a version is pinned

    def done(self, exc: BaseException | None) -> None:
        self._manager.record_request(
            self.name, self.version, self._protocol, outcome(exc), time.perf_counter() - self._started
        )


def outcome(exc: BaseException | None) -> str:
    """``success``, ``client_error`` (the client's mistake: a 4xx) or ``server_error`` (5xx, or a
    client that went away before the answer)."""
    if exc is None:
        return "success"
    if isinstance(exc, ModelServeError) and http_status(exc.code) < 500:
        return "client_error"
    if isinstance(exc, asyncio.CancelledError):
        return "client_error"  # the client gave up: not the server's failure
    return "server_error"
