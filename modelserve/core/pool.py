"""The one bridge between the async core and sync runtimes: a thread pool.

Runtimes such as onnxruntime release the GIL while computing, so threads give real parallelism
for them. Later, instance groups and worker processes plug in here without touching callers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar, TypeVarTuple, Unpack

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Pool:
    def __init__(self, threads: int = 0) -> None:
        """``threads`` = 0 means one per CPU this process may run on (respecting taskset/cgroups)."""
        affinity = getattr(os, "sched_getaffinity", None)  # Linux only
        self.threads = threads or (len(affinity(0)) if affinity else os.cpu_count()) or 1
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="modelserve-infer")
        # loads and unloads get threads of their own: a model that is READY answers at once, even
        # while others spend seconds importing TensorFlow or starting a JVM
        self._loader = ThreadPoolExecutor(max_workers=min(2, self.threads), thread_name_prefix="modelserve-load")

    async def run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """Run ``fn(*args)`` in a pool thread and await its result; exceptions propagate unchanged."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def load(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """Like :meth:`run`, on the loader threads (loads and unloads), never delaying inference."""
        return await asyncio.get_running_loop().run_in_executor(self._loader, fn, *args)

    def submit(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> Future[T]:
        """Queue ``fn(*args)``; the caller may still cancel the future while it waits for a thread."""
        return self._executor.submit(fn, *args)

    def shutdown(self) -> None:
        """Stop taking work; blocks until running calls finish."""
        self._loader.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True)
