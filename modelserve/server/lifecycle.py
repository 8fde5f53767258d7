"""Starts and stops one modelserve process: sockets, the HTTP server, the initial repository load.

The HTTP socket is bound before anything else so that port 0 resolves to a real port that can be
logged and read back; liveness answers at once, readiness once the repository load has settled.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Awaitable
from types import FrameType

import uvicorn

from modelserve.config.server import ServerConfig
from modelserve.core.manager import ModelManager
from modelserve.core.pool import Pool
from modelserve.server.http.app import HttpApp

log = logging.getLogger(__name__)


class Server:
    def __init__(self, config: ServerConfig, manager: ModelManager, pool: Pool, http_app: HttpApp) -> None:
        self.config = config
        self.manager = manager
        self._pool = pool
        self._app = http_app
        self._uvicorn: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._loading: asyncio.Task[None] | None = None
        self.http_port = 0

    @property
    def http_url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.http_port}"

    async def start(self) -> None:
        """Bind, start serving HTTP, and start loading the repository in the background."""
        sources = self.manager.discover(self.config.repository)  # a missing one fails before binding
        sock = _bind(self.config.host, self.config.http_port)
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            http="httptools",
            loop="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=30,
        )
        self._uvicorn = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._uvicorn.serve(sockets=[sock]))
        log.info("HTTP server listening on %s (REST: v2 and TF Serving v1)", self.http_url)
        self._loading = asyncio.create_task(self._load(self.manager.load_repository(sources)))

    async def _load(self, loading: Awaitable[None]) -> None:
        await loading
        # Loaded libraries leave ~10^5 long-lived objects; a full collection walking them all took
        # ~90 ms here, the p99 of every request it interrupts. Freezing moves them out of the
        # collector's way; garbage made while serving is still collected.
        gc.collect()
        gc.freeze()

    async def wait_loaded(self) -> None:
        """Return once every model of the initial load is READY or FAILED."""
        assert self._loading is not None, "start() first"
        await asyncio.shield(self._loading)

    async def wait_closed(self) -> None:
        """Return when the HTTP server has stopped (after a signal or :meth:`stop`)."""
        assert self._serving is not None, "start() first"
        await self._serving

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, unload every model."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._serving is not None:
            await self._serving
        if self._loading is not None:
            await self._loading
        await self.manager.shutdown()
        self._pool.shutdown()
        log.info("stopped")

    async def run_until_signal(self) -> None:
        """CLI entry: serve until SIGINT/SIGTERM, then shut down gracefully."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            if self._uvicorn is not None:
                self._uvicorn.should_exit = True

        # uvicorn captures these signals while serving and re-raises them afterwards to the
        # handler installed before it: this one, which only asks for the shutdown below.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
        await self.start()
        await self.wait_closed()
        await self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind HTTP server to {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock
