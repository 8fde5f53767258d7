"""The one bridge between the async core and sync runtimes: a thread pool.

Runtimes such as onnxruntime release the GIL while computing, so threads give real parallelism
for them. Later, instance groups and worker processes plug in here without touching callers.

A thread cannot be killed. When a runtime call hangs past its request's deadline (core/admission.py),
:meth:`Pool.abandon` replaces the whole executor with a fresh one of the same size: new work goes to
fresh threads at once, the old executor's healthy threads finish what it had queued and exit, and
only the hung thread stays behind until its call returns (counted in :attr:`Pool.hung`). Loads get
the same treatment (:meth:`Pool.abandon_loads`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar, TypeVarTuple, Unpack

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

log = logging.getLogger(__name__)

_PREFIXES = ("modelserve-infer", "modelserve-load")  # thread names


class Pool:
    def __init__(self, threads: int = 0) -> None:
        """``threads`` = 0 means one per CPU this process may run on (respecting taskset/cgroups)."""
        affinity = getattr(os, "sched_getaffinity", None)  # Linux only
        self.threads = threads or (len(affinity(0)) if affinity else os.cpu_count()) or 1
        self._executor = self._new_executor()
        # loads and unloads get threads of their own: a model that is READY answers at once, even
        # while others spend seconds importing TensorFlow or starting a JVM
        self._loader = self._new_loader()
        self._lock = threading.Lock()
        self.hung = 0  # abandoned calls (inference or load) whose thread has not come back yet
        self.abandoned = 0  # calls abandoned since start (inference or load)
        self._retired: list[ThreadPoolExecutor] = []  # replaced executors, until their hung call returns

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=_PREFIXES[0])

    def _new_loader(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=min(2, self.threads), thread_name_prefix=_PREFIXES[1])

    async def run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """Run ``fn(*args)`` in a pool thread and await its result; exceptions propagate unchanged."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def load(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """Like :meth:`run`, on the loader threads (loads and unloads), never delaying inference."""
        return await asyncio.get_running_loop().run_in_executor(self._loader, fn, *args)

    def submit(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> Future[T]:
        """Queue ``fn(*args)``; the caller may still cancel the future while it waits for a thread."""
        return self._executor.submit(fn, *args)

    def submit_load(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> Future[T]:
        """:meth:`submit` on the loader threads."""
        return self._loader.submit(fn, *args)

    def abandon(self, job: Future[Any]) -> None:
        """``job`` runs past its deadline and holds an inference thread: give its work to fresh threads."""
        self._replace(job, loader=False)

    def abandon_load(self, job: Future[Any]) -> None:
        """:meth:`abandon` for a load that runs past ``load_timeout_s``."""
        self._replace(job, loader=True)

    def _replace(self, job: Future[Any], loader: bool) -> None:
        if job.done():
            return
        with self._lock:
            old = self._loader if loader else self._executor
            if loader:
                self._loader = self._new_loader()
            else:
                self._executor = self._new_executor()
            self.hung += 1
            self.abandoned += 1
            self._retired.append(old)
        old.shutdown(wait=False)  # its healthy threads finish what it had queued, then exit
        kind = "load" if loader else "inference"
        log.warning("an %s call is hung; its work moves to fresh threads (%d hung call(s) now)", kind, self.hung)

        def returned(_: Future[Any]) -> None:
            with self._lock:
                self.hung -= 1
                if old in self._retired:
                    self._retired.remove(old)
            log.info("a hung %s call returned (%d still hung)", kind, self.hung)

        job.add_done_callback(returned)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking work; with ``wait``, block until running calls finish."""
        self._loader.shutdown(wait=wait, cancel_futures=True)
        self._executor.shutdown(wait=wait)

    def still_running(self, timeout: float) -> int:
        """After ``shutdown(wait=False)``: wait up to ``timeout`` s for the pool's threads to end;
        how many still run a call then (a hung or aborted call, which the process must not wait for)."""
        deadline = time.monotonic() + timeout
        while True:
            alive = [t for t in threading.enumerate() if t.name.startswith(_PREFIXES) and t.is_alive()]
            if not alive or time.monotonic() >= deadline:
                return len(alive)
            alive[0].join(max(0.0, min(0.1, deadline - time.monotonic())))
