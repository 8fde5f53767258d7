"""Worker processes for runtimes that hold the GIL (model-as-code, pure-Python libraries).

Threads give parallelism only to libraries that release the GIL (onnxruntime, torch, xgboost);
a ``model.py`` that computes in Python runs one request at a time however many threads call it.
With ``processes: N`` in config.yaml, a version runs in N worker processes instead: each loads the
model itself (a fresh interpreter, started with ``spawn``, so no lock or thread of the server is
inherited) and answers predict calls sent over a pipe. The server side is a :class:`ProcessRuntime`,
which the core uses like any runtime.

Supervision: a worker that dies (a segfault in a C extension, ``os._exit``, the OOM killer) fails
the request it was running at once with WorkerDied (503, "retry"), never a hang, and is replaced
in the background by a fresh process that loads the model again. A call still running at its
request's deadline (config.yaml ``limits.timeout_s``, or the client's) is stopped the same way:
its worker is killed and replaced, so a hung model never holds a thread or an instance. Requests meanwhile go to the
other workers; with none alive, they wait for a replacement up to ``REPLACE_WAIT_S``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import queue
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig
from modelserve.core.admission import call_deadline
from modelserve.errors import DeadlineExceeded, ErrorCode, LoadError, ModelServeError, RuntimeFailure
from modelserve.types import Signature

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # a worker's interpreter start and model load
REPLACE_WAIT_S = 60.0  # how long a request waits for a live worker when every one has died


class WorkerDied(ModelServeError):
    """The worker process running the request died; the request was not answered. Retry."""

    code = ErrorCode.UNAVAILABLE


class _Worker:
    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn


class ProcessRuntime:
    """A runtime whose ``load`` and ``predict`` run in ``processes`` worker processes."""

    def __init__(self, factory: str, platform: str, processes: int) -> None:
        self._factory = factory  # "module:Class" of the real runtime
        self.platform = platform
        self._processes = processes
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._artifact: Path | None = None
        self._config: ModelConfig | None = None
        self._closed = False
        self.model: Any = None  # lives in the workers; nothing to hand out here
        self.restarts = 0

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        self._artifact, self._config = artifact, config
        started = [self._spawn() for _ in range(self._processes)]
        signatures = []
        try:
            for worker in started:
                signatures.append(self._handshake(worker))
        except BaseException:
            for worker in started:
                _stop(worker)
            raise
        for worker in started:
            self._add(worker)
        return signatures[0]

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        try:
            worker = self._idle.get(timeout=REPLACE_WAIT_S)
        except queue.Empty:
            raise WorkerDied(f"no worker process of {self._factory} became available in {REPLACE_WAIT_S:g} s") from None
        deadline = call_deadline()
        try:
            worker.conn.send(("predict", dict(inputs), None if outputs is None else list(outputs)))
            if deadline is not None and not worker.conn.poll(max(0.0, deadline - time.monotonic())):
                self._kill(worker)
                raise DeadlineExceeded(
                    f"the worker process (pid {worker.process.pid}) did not answer before the request's deadline; "
                    "it was killed and is being replaced"
                )
            status, payload = worker.conn.recv()
        except (EOFError, OSError):
            self._replace(worker)
            raise WorkerDied(
                f"the worker process (pid {worker.process.pid}) running this request died "
                f"(exit code {_exit_code(worker)}); it is being replaced: retry"
            ) from None
        self._idle.put(worker)
        if status == "ok":
            result: dict[str, np.ndarray] = payload
            return result
        if status == "served":  # a ModelServeError raised by the model: keep its meaning
            raise payload
        raise RuntimeFailure(f"the model raised in its worker process: {payload}")

    def unload(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            _stop(worker)

    # -- workers ---------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(theirs, self._factory, self._artifact, self._config), daemon=True
        )
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def _handshake(self, worker: _Worker) -> Signature:
        if not worker.conn.poll(START_TIMEOUT_S):
            raise LoadError(f"a worker process did not load the model within {START_TIMEOUT_S:g} s")
        try:
            status, payload = worker.conn.recv()
        except (EOFError, OSError):
            raise LoadError(f"a worker process died while loading the model (exit code {_exit_code(worker)})") from None
        if status != "ok":
            raise payload if isinstance(payload, LoadError) else LoadError(str(payload))
        signature: Signature = payload
        return signature

    def _add(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed:
                _stop(worker)
                return
            self._workers.append(worker)
        self._idle.put(worker)

    def _kill(self, hung: _Worker) -> None:
        """Stop a worker stuck in a call, at once, and start its replacement."""
        hung.process.kill()
        hung.process.join(timeout=5)
        hung.conn.close()
        self._replace(hung)

    def _replace(self, dead: _Worker) -> None:
        """Forget ``dead`` and start a replacement in the background."""
        with self._lock:
            if dead in self._workers:
                self._workers.remove(dead)
            if self._closed:
                return
            self.restarts += 1
        log.error("a worker process of %s died (exit code %s); starting a replacement", self._factory, _exit_code(dead))
        threading.Thread(target=self._start_replacement, name="modelserve-worker-restart", daemon=True).start()

    def _start_replacement(self) -> None:
        worker = self._spawn()
        try:
            self._handshake(worker)
        except ModelServeError as exc:
            log.error("the replacement worker of %s failed to load: %s", self._factory, exc.message)
            _stop(worker)
            return
        self._add(worker)


def _exit_code(worker: _Worker) -> object:
    worker.process.join(timeout=1)
    return worker.process.exitcode


def _stop(worker: _Worker) -> None:
    with contextlib.suppress(OSError, ValueError):  # already gone
        worker.conn.send(("stop", None, None))
    worker.process.join(timeout=5)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    worker.conn.close()


def _worker_main(conn: Connection, factory: str, artifact: Path, config: ModelConfig) -> None:
    """In the worker process: load the runtime, then answer until told to stop or the pipe closes."""
    module_name, _, class_name = factory.partition(":")
    try:
        runtime = getattr(importlib.import_module(module_name), class_name)()
        signature = runtime.load(artifact, config)
    except ModelServeError as exc:
        conn.send(("error", LoadError(exc.message)))
        return
    except Exception as exc:
        conn.send(("error", LoadError(f"unexpected {type(exc).__name__} while loading: {exc}")))
        return
    conn.send(("ok", signature))
    while True:
        try:
            command, inputs, outputs = conn.recv()
        except (EOFError, OSError):
            break  # the server went away
        if command == "stop":
            break
        try:
            conn.send(("ok", runtime.predict(inputs, outputs)))
        except ModelServeError as exc:
            conn.send(("served", exc))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            log.debug("model raised in worker: %s", traceback.format_exc())
    runtime.unload()
