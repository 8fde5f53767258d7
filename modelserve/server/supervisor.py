"""``serve --workers N``: N server processes sharing the HTTP and gRPC ports.

One event loop serves some ten thousand small requests a second; past that, more processes. Each
worker is a complete ``modelserve serve`` (every model loaded in each: memory times N) that binds
the same ports with SO_REUSEPORT, so the kernel spreads new connections across them. This process
only supervises: it picks the ports (port 0 becomes a free port, held reserved by a bound socket
that never listens), starts the workers, restarts one that dies (after a pause that grows while
it keeps dying young), and on SIGTERM/SIGINT asks every worker to stop gracefully and waits.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

from modelserve.config.server import ServerConfig

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 45.0  # a worker gets this long to finish its requests after SIGTERM
YOUNG_S = 10.0  # a worker that dies younger than this is crashing, not just unlucky
MAX_BACKOFF_S = 30.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def reserve(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (0: a free port) with SO_REUSEPORT, never listening: it
    keeps the port for the workers, which bind it too, and receives no connections itself."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Supervisor:
    def __init__(self, config: ServerConfig, worker_argv: Sequence[str]) -> None:
        """``worker_argv`` is the command line of one worker, without the port options."""
        self._config = config
        self._argv = list(worker_argv)
        self._workers: dict[int, tuple[subprocess.Popen[bytes], float]] = {}  # slot -> (process, started)
        self._failures: dict[int, int] = {}  # slot -> young deaths in a row
        self._stopping = False
        self._stats_dir = ""

    def run(self) -> int:
        # every worker publishes its figures here; any worker's /metrics adds them all up
        self._stats_dir = tempfile.mkdtemp(prefix="modelserve-stats-")
        http = reserve(self._config.host, self._config.http_port)
        grpc = reserve(self._config.host, self._config.grpc_port)
        ports = ["--http-port", str(http.getsockname()[1]), "--grpc-port", str(grpc.getsockname()[1])]
        self._argv += ports
        log.info(
            "supervising %d workers on HTTP port %s and gRPC port %s",
            self._config.workers, http.getsockname()[1], grpc.getsockname()[1],
        )  # fmt: skip
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        try:
            for slot in range(self._config.workers):
                self._start(slot)
            while not self._stopping:
                self._reap()
                time.sleep(0.2)
            return self._stop_all()
        finally:
            http.close()
            grpc.close()
            shutil.rmtree(self._stats_dir, ignore_errors=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping the workers", signal.Signals(signum).name)
        self._stopping = True

    def _start(self, slot: int) -> None:
        env = {
            **os.environ,
            "MODELSERVE_REUSE_PORT": "on",
            "MODELSERVE_WORKERS": "1",
            "MODELSERVE_WORKER": str(slot),
            "MODELSERVE_STATS_DIR": self._stats_dir,
        }
        process = subprocess.Popen(self._argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self._workers[slot] = (process, time.monotonic())
        log.info("worker %d started (pid %d)", slot, process.pid)

    def _reap(self) -> None:
        for slot, (process, started) in list(self._workers.items()):
            code = process.poll()
            if code is None or self._stopping:
                continue
            young = time.monotonic() - started < YOUNG_S
            self._failures[slot] = self._failures.get(slot, 0) + 1 if young else 0
            pause = min(MAX_BACKOFF_S, 0.5 * 2 ** self._failures[slot]) if young else 0.0
            log.error("worker %d (pid %d) exited with %s; restarting it in %.1f s", slot, process.pid, code, pause)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and not self._stopping:
                time.sleep(0.1)
            if not self._stopping:
                self._start(slot)

    def _stop_all(self) -> int:
        for process, _ in self._workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        status = 0
        for slot, (process, _) in self._workers.items():
            try:
                code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d (pid %d) did not stop in time; killing it", slot, process.pid)
                process.kill()
                code = process.wait()
            status = status or (code if code and code > 0 else 0)
        log.info("stopped")
        return status


def _die_with_parent() -> None:
    """In the worker, before exec: ask Linux for SIGTERM when the supervisor dies, even by SIGKILL,
    so that no orphaned worker keeps serving (and holding the ports) on its own."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: a supervisor killed by SIGKILL leaves workers behind
        pass


def worker_argv(argv: Sequence[str]) -> list[str]:
    """This command line for one worker: ``--workers`` and the port options removed."""
    out: list[str] = [sys.executable, "-m", "modelserve.cli"]
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--workers", "--http-port", "--grpc-port"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out
