"""The door every request but the health probes comes through, so that shutdown loses nothing.

While serving, :meth:`Gate.enter` counts a request in and :meth:`Gate.leave` out. On SIGTERM the
lifecycle closes the gate: from then on a new request gets :class:`ShuttingDown` (503 with
``Retry-After`` and ``Connection: close``; gRPC UNAVAILABLE), which a load balancer or client
retries elsewhere, while the requests already in finish. :meth:`Gate.drained` waits for them up to
the grace period; :meth:`Gate.abort` then cancels the ones still running, and the front ends answer
each of those with an explicit 503 rather than a dropped connection. Every accepted request gets
exactly one answer.

Everything here runs on the event loop thread: no lock.
"""

from __future__ import annotations

import asyncio
import time

from modelserve.errors import ErrorCode, ModelServeError


class ShuttingDown(ModelServeError):
    """The server is stopping: the request was not run (or, aborted, not finished). Retry elsewhere."""

    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.response_headers = [("retry-after", "1"), ("connection", "close")]


class Gate:
    def __init__(self) -> None:
        self.closed = False
        self.aborting = False
        self._running: set[asyncio.Task[object]] = set()
        self._count = 0  # requests in, including those entered outside a task of their own
        self._idle: asyncio.Event | None = None

    @property
    def inflight(self) -> int:
        return self._count

    def enter(self) -> None:
        """Count the current request in. Raises ShuttingDown once the gate is closed."""
        if self.closed:
            raise ShuttingDown("the server is shutting down and takes no new requests; retry on another replica")
        self._count += 1
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)

    def leave(self) -> None:
        self._count -= 1
        task = asyncio.current_task()
        if task is not None:
            self._running.discard(task)
        if self._count == 0 and self._idle is not None:
            self._idle.set()

    def close(self) -> None:
        """Refuse new requests from now on."""
        self.closed = True

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is in, up to ``timeout`` s; whether none is."""
        if self._count == 0:
            return True
        self._idle = asyncio.Event()
        deadline = time.monotonic() + timeout
        while self._count and time.monotonic() < deadline:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
        return self._count == 0

    async def abort(self) -> int:
        """Cancel the requests still running (each is answered 503 by its front end); how many."""
        self.aborting = True
        tasks = [task for task in self._running if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    def aborted(self) -> ShuttingDown:
        return ShuttingDown("the server shut down before this request finished (shutdown grace period over); retry")
