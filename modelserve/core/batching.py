"""Adaptive batching: concurrent requests to one model version merged into one runtime call.

A :class:`Batcher` owns a version's ``instances`` (how many runtime calls of it may run at once).
Requests queue; whenever an instance is free, it takes what is queued, up to ``max_batch_size``
rows, concatenates each input along the first (batch) dimension, runs the runtime once in the
pool, and splits every output back by row counts. At low load the queue holds one request and it
runs at once: no delay is added. ``max_delay_ms > 0`` makes a free instance wait, up to that long
after the oldest queued request arrived, for a fuller batch (``preferred_batch_sizes`` lets it go
as soon as one of those sizes is reached).

Only requests that can share a call merge: the same signature, the same requested outputs, and
the same dtype and non-batch dimensions for every input. A request with more rows than
``max_batch_size`` (or with none) runs alone. A request whose deadline passed while it queued is
answered DeadlineExceeded without running; one whose caller went away is dropped.

If a merged call raises, or returns an output whose first dimension is not the batch's row count,
each request of that batch is run again on its own, so that one bad request fails alone; a model
whose outputs cannot be split is not batched again.

Everything here but the runtime call runs on the event loop thread, so the queue needs no lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelserve.core.admission import HUNG_GRACE_S, set_call_deadline
from modelserve.core.pool import Pool
from modelserve.core.stats import VersionStats
from modelserve.errors import DeadlineExceeded

log = logging.getLogger(__name__)

# rows of the runtime call that answered this task's last request (the access log reports it)
batch_rows: ContextVar[int] = ContextVar("batch_rows", default=0)
# whether the runtime call of this task's last cancelled request had started (a timeout says so)
call_started: ContextVar[bool] = ContextVar("call_started", default=False)
# and when (time.perf_counter()) that request was queued, its call started and ended (traces)
phases: ContextVar[tuple[float, float, float] | None] = ContextVar("phases", default=None)

Predict = Callable[[dict[str, np.ndarray], list[str] | None, str | None], dict[str, np.ndarray]]
Outcome = dict[str, np.ndarray] | BaseException


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_batch_size: int = 64  # rows per runtime call
    max_delay_ms: float = 0.0  # 0: never wait for a fuller batch
    preferred_batch_sizes: tuple[int, ...] = ()  # with a delay: go as soon as one of these is reached
    instances: int = 1  # runtime calls of the version that may run at once


@dataclass(slots=True)
class BatchStats:
    """Counters a metrics exporter reads: batches run, rows in them, time requests spent queued."""

    batches: int = 0
    rows: int = 0
    requests: int = 0
    queued_seconds: float = 0.0
    split_fallbacks: int = 0


@dataclass(eq=False, slots=True)
class _Item:
    feeds: dict[str, np.ndarray]
    requested: list[str] | None
    signature: str | None
    rows: int
    key: tuple[Any, ...]
    deadline: float | None
    future: asyncio.Future[dict[str, np.ndarray]]
    queued_at: float = field(default_factory=time.monotonic)
    batch_rows: int = 0  # rows of the runtime call it joined
    enqueued: float = field(default_factory=time.perf_counter)
    phases: tuple[float, float, float] | None = None  # queued, call started, call ended (perf_counter)
    job: Future[Any] | None = None  # the pool job of the runtime call it joined


class Batcher:
    def __init__(
        self,
        pool: Pool,
        predict: Predict,
        policy: BatchPolicy,
        label: str,
        *,
        pin: Callable[[], None],
        unpin: Callable[[], None],
        observe: VersionStats | None = None,
        on_hung: Callable[[Future[Any]], None] | None = None,
    ) -> None:
        """``predict(feeds, requested, signature)`` runs the runtime (in a pool thread). ``pin`` and
        ``unpin`` keep the version loaded while a call of it runs, whoever still waits for it.
        ``on_hung(job)``: a call still runs past the deadlines of all its requests; its instance is
        given back to the queue at once, and the callback replaces the thread it holds."""
        self._pool = pool
        self._predict = predict
        self.policy = policy
        self._label = label
        self._pin, self._unpin = pin, unpin
        self._queue: deque[_Item] = deque()
        self._free = policy.instances
        self._timer: asyncio.TimerHandle | None = None
        self._splittable = True
        self.stats = BatchStats()
        self._observe = observe  # the version's serving statistics: queue time, batch size, compute time
        self._on_hung = on_hung
        self._abandoned: set[Future[Any]] = set()  # hung calls whose instance was already given back

    async def predict(
        self,
        feeds: dict[str, np.ndarray],
        requested: list[str] | None,
        deadline: float | None,
        signature: str | None,
    ) -> dict[str, np.ndarray]:
        """The runtime's outputs for this request's rows alone. Raises what the runtime raised,
        or DeadlineExceeded. Cancelling the caller drops a request that has not started."""
        first = next(iter(feeds.values()), None)
        rows = int(first.shape[0]) if first is not None and first.ndim else 0
        shapes = tuple((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items())
        key = (signature, None if requested is None else tuple(requested), *shapes)
        loop = asyncio.get_running_loop()
        item = _Item(feeds, requested, signature, rows, key, deadline, loop.create_future())
        self._queue.append(item)
        self._dispatch()
        try:
            result = await item.future  # a cancelled caller cancels the future: _take skips it
        except asyncio.CancelledError:
            call_started.set(item.job is not None and not item.job.cancelled() and item.job.running())
            raise
        batch_rows.set(item.batch_rows)
        phases.set(item.phases)
        return result

    # -- the queue -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self._free and self._queue:
            if not self._ready_to_go():
                return
            batch = self._take()
            if not batch:
                continue
            self._run(batch)

    def _ready_to_go(self) -> bool:
        """Whether a free instance should start now rather than wait for a fuller batch."""
        policy = self.policy
        if policy.max_delay_ms <= 0:
            return True
        head = self._queue[0]
        rows = sum(item.rows for item in self._queue if item.key == head.key and not item.future.done())
        if rows >= policy.max_batch_size or rows in policy.preferred_batch_sizes:
            return True
        wait = head.queued_at + policy.max_delay_ms / 1000 - time.monotonic()
        if wait <= 0:
            return True
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)
        return False

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> list[_Item]:
        """The head request and every queued one that can share its call, up to max_batch_size rows."""
        now = time.monotonic()
        limit = self.policy.max_batch_size if self._splittable else 1
        batch: list[_Item] = []
        rows = 0
        kept: deque[_Item] = deque()
        while self._queue:
            item = self._queue.popleft()
            if item.future.done():  # its caller went away
                continue
            if item.deadline is not None and now >= item.deadline:
                item.future.set_exception(
                    DeadlineExceeded("the request's deadline passed while it was queued; it was not run")
                )
                continue
            alone = item.rows == 0 or item.rows > limit
            if not batch:
                batch.append(item)
                rows = item.rows
                if alone:
                    break
                continue
            if alone or item.key != batch[0].key or rows + item.rows > limit:
                kept.append(item)
                if rows >= limit:
                    break
                continue
            batch.append(item)
            rows += item.rows
            if rows >= limit:
                break
        kept.extend(self._queue)
        self._queue = kept
        return batch

    def _run(self, batch: list[_Item]) -> None:
        self._free -= 1
        self._pin()
        now = time.monotonic()
        stats = self.stats
        stats.batches += 1
        stats.requests += len(batch)
        stats.rows += sum(item.rows for item in batch)
        stats.queued_seconds += sum(now - item.queued_at for item in batch)
        rows = sum(item.rows for item in batch)
        for item in batch:
            item.batch_rows = rows
        if self._observe is not None:
            for item in batch:
                self._observe.queue.observe(now - item.queued_at)
            self._observe.batch_size.observe(rows)
        job = self._pool.submit(
            _run_batch, self._predict, [(i.feeds, i.requested, i.signature, i.rows, i.deadline) for i in batch]
        )
        for item in batch:
            item.job = job
        loop = asyncio.get_running_loop()
        job.add_done_callback(lambda done: loop.call_soon_threadsafe(self._finished, batch, done))
        deadlines = [item.deadline for item in batch]
        if self._on_hung is not None and None not in deadlines:
            latest = max(d for d in deadlines if d is not None)
            loop.call_later(max(0.0, latest - time.monotonic()) + HUNG_GRACE_S, self._check_hung, job)

    def _check_hung(self, job: Future[Any]) -> None:
        """Every request of ``job`` is past its deadline and answered 504, yet the call runs on."""
        if job.done() or self._on_hung is None:
            return
        log.warning("a runtime call of model %s is hung past its deadline; its instance is recycled", self._label)
        self._abandoned.add(job)
        self._free += 1
        self._on_hung(job)
        self._dispatch()

    def _finished(self, batch: list[_Item], job: Future[tuple[list[Outcome], bool, float]]) -> None:
        if job in self._abandoned:
            self._abandoned.discard(job)  # its instance was given back when it was found hung
        else:
            self._free += 1
        self._unpin()
        try:
            outcomes, split_failed, seconds = job.result()
        except BaseException as exc:  # the pool was shut down under it
            outcomes, split_failed, seconds = [exc] * len(batch), False, 0.0
        if self._observe is not None and seconds:
            self._observe.compute.observe(seconds)
        ended = time.perf_counter()
        for item in batch:
            item.phases = (item.enqueued, ended - seconds, ended)
        if split_failed and self._splittable:
            self._splittable = False
            self.stats.split_fallbacks += 1
            log.warning("model %s returns outputs that do not split by rows; it is no longer batched", self._label)
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)
        self._dispatch()


class _Unsplittable(Exception):
    pass


Work = tuple[dict[str, np.ndarray], list[str] | None, str | None, int, float | None]


def _run_batch(predict: Predict, items: Sequence[Work]) -> tuple[list[Outcome], bool, float]:
    """Run in a pool thread: one call for all ``items``, split back; on failure, each alone.
    Returns the outcomes in order, whether a merged call's outputs could not be split, and the
    seconds the runtime computed.

    Deadlines are checked again here: the pool's queue may have held the batch past them."""
    now = time.monotonic()
    outcomes: list[Outcome | None] = [
        DeadlineExceeded("the request's deadline passed while it waited for a worker; it was not run")
        if deadline is not None and now >= deadline
        else None
        for *_, deadline in items
    ]
    live = [i for i, outcome in enumerate(outcomes) if outcome is None]
    deadlines = [items[i][4] for i in live]
    set_call_deadline(None if None in deadlines or not live else max(d for d in deadlines if d is not None))
    started = time.perf_counter()
    split_failed = False
    if len(live) == 1:
        feeds, requested, signature, *_ = items[live[0]]
        outcomes[live[0]] = _guarded(predict, feeds, requested, signature)
    elif live:
        _, requested, signature, *_ = items[live[0]]
        merged = {name: np.concatenate([items[i][0][name] for i in live]) for name in items[live[0]][0]}
        try:
            raw = predict(merged, requested, signature)
            for i, part in zip(live, _split(raw, [items[i][3] for i in live]), strict=True):
                outcomes[i] = part
        except _Unsplittable:
            split_failed = True
        except Exception:
            pass  # maybe one request's rows: find out which, each alone
        for i in live:
            if outcomes[i] is None:
                feeds, requested, signature, *_ = items[i]
                outcomes[i] = _guarded(predict, feeds, requested, signature)
    elapsed = time.perf_counter() - started if live else 0.0
    return [o for o in outcomes if o is not None], split_failed, elapsed


def _guarded(
    predict: Predict, feeds: dict[str, np.ndarray], requested: list[str] | None, signature: str | None
) -> Outcome:
    try:
        return predict(feeds, requested, signature)
    except Exception as exc:
        return exc


def _split(raw: dict[str, np.ndarray], counts: list[int]) -> list[Outcome]:
    total = sum(counts)
    offsets = np.cumsum(counts)[:-1]
    parts: dict[str, list[np.ndarray]] = {}
    for name, array in raw.items():
        array = np.asarray(array)
        if array.ndim == 0 or array.shape[0] != total:
            raise _Unsplittable(name)
        parts[name] = np.split(array, offsets)
    return [{name: pieces[i] for name, pieces in parts.items()} for i in range(len(counts))]
