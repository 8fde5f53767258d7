"""Backpressure and timeouts of one model version (config.yaml ``limits``).

A version admits at most ``max_queue + instances`` requests at once: ``instances`` computing and
``max_queue`` waiting for them (with batching, the rows of a running call count too). One more is
refused at once with :class:`Overloaded` (429 / gRPC RESOURCE_EXHAUSTED) and a ``Retry-After`` of
the recent latency of admitted requests, rounded up, at least 1 s: a client that waits that long
finds the queue about drained. Refusing early keeps the latency of admitted requests bounded
under any overload, and memory flat, instead of queueing without bound.

Every admitted request gets a deadline: the client's own, or ``timeout_s`` after admission if that
comes first. Past it the caller gets DeadlineExceeded (504) whether or not the runtime has
answered; a runtime call still running then is *hung*, and the core abandons it (core/pool.py
replaces the thread; a worker process is killed and replaced, core/processes.py) so that the queue
moves on.

Everything here runs on the event loop thread: no lock.
"""

from __future__ import annotations

import math
import threading
import time

from modelserve.config.model import Limits
from modelserve.errors import DeadlineExceeded, ErrorCode, ModelServeError

EWMA_WEIGHT = 0.1  # of the newest latency in the running average


class Overloaded(ModelServeError):
    """The version's queue is full; ``retry_after`` (whole seconds) says when to try again."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.response_headers = [("retry-after", str(retry_after))]  # the REST app sends these


class Admission:
    """Counts what one version has admitted; ``admit`` before computing, ``done`` after."""

    __slots__ = ("_latency", "capacity", "label", "limits", "pending", "refused", "timed_out")

    def __init__(self, label: str, limits: Limits, instances: int) -> None:
        self.label = label
        self.limits = limits
        self.capacity = limits.max_queue + max(1, instances)
        self.pending = 0  # admitted, not yet answered
        self.refused = 0  # turned away because the queue was full
        self.timed_out = 0  # answered DeadlineExceeded because timeout_s passed
        self._latency = 0.0  # running average of admitted requests' seconds to an answer

    def admit(self, client_deadline: float | None) -> float | None:
        """Count one request in and return its deadline (``time.monotonic()`` s, None: none).
        Raises Overloaded when ``capacity`` requests are already in progress."""
        if self.pending >= self.capacity:
            self.refused += 1
            retry = max(1, math.ceil(self._latency))
            raise Overloaded(
                f"model {self.label} is overloaded: {self.pending} requests in progress, the limit is "
                f"{self.capacity} (config.yaml limits.max_queue = {self.limits.max_queue} plus one per instance); "
                f"retry after {retry} s",
                retry,
            )
        self.pending += 1
        if not self.limits.timeout_s:
            return client_deadline
        own = time.monotonic() + self.limits.timeout_s
        return own if client_deadline is None or own < client_deadline else client_deadline

    def done(self, seconds: float) -> None:
        """Count one admitted request out, answered after ``seconds``."""
        self.pending -= 1
        self._latency += EWMA_WEIGHT * (seconds - self._latency)

    def expired(self, deadline: float, client_deadline: float | None, started: bool) -> DeadlineExceeded:
        """The error for a request whose ``deadline`` passed before its answer came; ``started``:
        whether its runtime call had begun."""
        self.timed_out += 1
        fate = "its runtime call was abandoned" if started else "it was not run"
        if client_deadline is not None and deadline >= client_deadline:
            return DeadlineExceeded(f"the client's deadline passed before model {self.label} answered; {fate}")
        return DeadlineExceeded(
            f"model {self.label} did not answer within its timeout of {self.limits.timeout_s:g} s "
            f"(config.yaml limits.timeout_s); {fate}"
        )


HUNG_GRACE_S = 0.5  # past the deadline before a call still running counts as hung

_call = threading.local()


def set_call_deadline(deadline: float | None) -> None:
    """In a pool thread, before a runtime call: the latest deadline of the requests it serves.
    A runtime that can stop a call (worker processes) reads it with :func:`call_deadline`."""
    _call.deadline = deadline


def call_deadline() -> float | None:
    """The deadline (``time.monotonic()`` s) of the runtime call this thread runs; None: none."""
    deadline: float | None = getattr(_call, "deadline", None)
    return deadline
