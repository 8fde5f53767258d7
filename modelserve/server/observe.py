"""Each inference request at the transport edge: its outcome and latency go to the manager's
statistics (core/stats.py) and, when the access log is on, one structured record goes to the
``modelserve.access`` logger (request id, model, version, protocol, status, latency, batch rows)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from modelserve.core.batching import batch_rows
from modelserve.core.manager import ModelManager
from modelserve.errors import ModelServeError
from modelserve.protocol.status import grpc_status, http_status
from modelserve.telemetry import logs

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class Observer:
    def __init__(self, manager: ModelManager, access_log: bool) -> None:
        self.manager = manager
        self.access_log = access_log

    def start(self, protocol: str, name: str, request_id: str | None = None) -> Observed:
        """A request begins. ``request_id``: the client's (X-Request-ID), if it sent a usable one."""
        if request_id is not None and not _REQUEST_ID.fullmatch(request_id):
            request_id = None
        if request_id is None and self.access_log:
            request_id = uuid.uuid4().hex[:16]
        return Observed(self, protocol, name, request_id)


class Observed:
    """One request being served: call :meth:`done` once with the exception it ended with, or None."""

    __slots__ = ("_observer", "_protocol", "_started", "name", "request_id", "version")

    def __init__(self, observer: Observer, protocol: str, name: str, request_id: str | None) -> None:
        self._observer = observer
        self._protocol = protocol
        self._started = time.perf_counter()
        self.name = name
        self.request_id = request_id  # echoed in the response when set
        self.version: int | None = None  # set once a version is pinned

    def done(self, exc: BaseException | None) -> None:
        seconds = time.perf_counter() - self._started
        self._observer.manager.record_request(self.name, self.version, self._protocol, outcome(exc), seconds)
        if self._observer.access_log:
            logs.access(
                {
                    "request_id": self.request_id,
                    "model": self.name,
                    "version": "" if self.version is None else str(self.version),
                    "protocol": self._protocol,
                    "status": self._status(exc),
                    "latency_ms": round(seconds * 1000, 3),
                    "batch_rows": batch_rows.get() if exc is None else 0,
                }
            )

    def _status(self, exc: BaseException | None) -> int | str:
        grpc = self._protocol == "grpc"
        if exc is None:
            return "OK" if grpc else 200
        if isinstance(exc, ModelServeError):
            return grpc_status(exc.code).name if grpc else http_status(exc.code)
        if isinstance(exc, asyncio.CancelledError):
            return "CANCELLED" if grpc else 499  # the client went away (nginx's convention)
        return "INTERNAL" if grpc else 500


def outcome(exc: BaseException | None) -> str:
    """``success``, ``client_error`` (the client's mistake: a 4xx) or ``server_error`` (5xx)."""
    if exc is None:
        return "success"
    if isinstance(exc, ModelServeError) and http_status(exc.code) < 500:
        return "client_error"
    if isinstance(exc, asyncio.CancelledError):
        return "client_error"  # the client gave up: not the server's failure
    return "server_error"
