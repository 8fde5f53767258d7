"""Run a real modelserve server for tests: ``with modelserve.testing.run(repo) as srv: srv.http_url``.

The server runs on its own event loop in a background thread, so both synchronous clients
(tritonclient, httpx.Client) and asynchronous ones work against it. Ports default to 0 and the
bound port is read back; entering returns once the repository load has settled.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from modelserve.bootstrap import build_server
from modelserve.config.server import ServerConfig
from modelserve.server.lifecycle import Server


class run:  # noqa: N801  (used like a function: ``with run(repo) as srv``)
    def __init__(self, repository: Path | str, *, http_port: int = 0, grpc_port: int = 0, **settings: Any) -> None:
        # no hot reload unless asked: a test that edits the repository decides when it reloads
        overrides = {"http_port": http_port, "grpc_port": grpc_port, "watch_interval": 0.0, **settings}
        self.config = ServerConfig.load(Path(repository), overrides, env={})
        self.server: Server = build_server(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="modelserve-test-server", daemon=True)

    @property
    def http_url(self) -> str:
        return self.server.http_url

    @property
    def grpc_target(self) -> str:
        """``host:port`` for gRPC clients (``tritonclient.grpc.InferenceServerClient(srv.grpc_target)``)."""
        return self.server.grpc_target

    def __enter__(self) -> run:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)

    async def __aenter__(self) -> run:
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.__exit__, t, e, tb)

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (e.g. ``srv.call(srv.server.manager.unload(...))``)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
            await self.server.wait_loaded()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await self.server.stop()
