"""Starts and stops one modelserve process: sockets, the HTTP and gRPC servers, the initial load.

Both sockets are bound before anything loads, so that port 0 resolves to a real port that can be
logged and read back; liveness answers at once, readiness once the repository load has settled.
Both servers run on one event loop and share one model manager. With TLS configured both take
the same certificate and key, and with a client CA both require a client certificate it signed.

Shutdown (SIGTERM or SIGINT) is graceful and bounded by ``shutdown_grace_s``: readiness turns
false and the gate (server/gate.py) refuses new requests with 503 at once, while the listeners stay
open (at least LINGER_S), so that clients get an answer rather than a refused connection while
their load balancer moves on; the requests already in finish; any still running when the grace
period ends are answered 503 explicitly; then the servers stop, models unload and the process
exits 0. Once the listeners close, new connections are refused, and a request sent at that very
instant on a connection the server had not read yet may see a reset: it was never accepted (the
shutdown tests bound this to one per client). A second signal exits at once (status 128 +
signal), killing worker processes first. A runtime call that is still running at the end (hung,
or cut off by the grace period) cannot hold the exit: the process leaves without its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Generator

import grpc
import uvicorn

from modelserve.config.server import ServerConfig
from modelserve.core.manager import ModelManager
from modelserve.core.pool import Pool
from modelserve.core.watcher import RepositoryWatcher
from modelserve.errors import ConfigError
from modelserve.monitoring.service import Monitoring
from modelserve.routing.router import Router
from modelserve.server.dashboard import Dashboard
from modelserve.server.gate import Gate
from modelserve.server.http.app import HttpApp
from modelserve.server.metrics import Metrics
from modelserve.telemetry.payloads import PayloadSink
from modelserve.telemetry.tracing import Tracing

log = logging.getLogger(__name__)

LINGER_S = 1.0  # at least this long between the signal and closing the listeners (within the grace)


class Server:
    def __init__(
        self,
        config: ServerConfig,
        manager: ModelManager,
        pool: Pool,
        http_app: HttpApp,
        grpc_handler: grpc.GenericRpcHandler,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.manager = manager
        self.pool = pool
        self._app = http_app
        self._grpc_handler = grpc_handler
        self._grpc: grpc.aio.Server | None = None
        self.grpc_port = 0
        self._uvicorn: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._loading: asyncio.Task[None] | None = None
        self._watcher = RepositoryWatcher(manager, config.watch_interval) if config.watch_interval > 0 else None
        self._watching: asyncio.Task[None] | None = None
        self._idling: asyncio.Task[None] | None = None
        self._metrics = metrics
        self._publishing: asyncio.Task[None] | None = None
        self.tracing: Tracing | None = None  # set by bootstrap; flushed at stop
        self.payloads: PayloadSink | None = None  # set by bootstrap; drained at stop
        self.router: Router | None = None  # set by bootstrap; started once the models are loaded
        self.monitoring: Monitoring | None = None  # set by bootstrap; started once the models are loaded
        self.dashboard: Dashboard | None = None  # set by bootstrap; its sampler and audit store stop with it
        self.gate: Gate | None = None  # set by bootstrap: closed on shutdown, so that nothing in flight is lost
        self.stuck_threads = 0  # pool threads still in a call after stop(): the process exits without them
        self.http_port = 0
        self._signals = 0

    @property
    def http_url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{_host(self.config.host)}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the gRPC server, as gRPC clients take it."""
        return f"{_host(self.config.host)}:{self.grpc_port}"

    async def start(self) -> None:
        """Bind, start serving HTTP and gRPC, and start loading the repository in the background."""
        sources = self.manager.discover()  # a missing repository fails before binding
        _check_tls(self.config)  # and so does a certificate that does not load
        if self._watcher is not None:
            self._watcher.prime()
        preloaded = None
        if self.config.reuse_port:
            # a worker sharing its ports (serve --workers) takes connections only once its models
            # are loaded: a worker restarted by the supervisor must not answer 503 meanwhile
            preloaded = asyncio.create_task(self._load(self.manager.load_repository(sources)))
            await asyncio.shield(preloaded)
        sock = _bind(self.config.host, self.config.http_port, self.config.reuse_port)
        try:
            await self._start_grpc()
        except BaseException:
            sock.close()
            raise
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
            # uvicorn wraps the accepted connections of the socket handed to serve() in this TLS
            ssl_certfile=self.config.tls_cert or None,
            ssl_keyfile=self.config.tls_key or None,
            ssl_ca_certs=self.config.tls_client_ca or None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if self.config.tls_client_ca else ssl.CERT_NONE,
        )
        self._uvicorn = _Uvicorn(config)
        self._serving = asyncio.create_task(self._uvicorn.serve(sockets=[sock]))
        log.info("HTTP server listening on %s (REST: v2 and TF Serving v1)", self.http_url)
        log.info("gRPC server listening on %s (inference.GRPCInferenceService)", self.grpc_target)
        self._loading = preloaded or asyncio.create_task(self._load(self.manager.load_repository(sources)))

    async def _start_grpc(self) -> None:
        limit = self.config.max_request_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),  # larger: RESOURCE_EXHAUSTED
                ("grpc.max_send_message_length", limit),
                # a second server on a taken port must fail, not share it; worker processes
                # (serve --workers) share theirs on purpose, and the kernel spreads connections
                ("grpc.so_reuseport", 1 if self.config.reuse_port else 0),
                # metadata (headers) over the limit is refused: the soft limit alone refuses only some
                ("grpc.max_metadata_size", self.config.max_header_bytes),
                ("grpc.absolute_max_metadata_size", self.config.max_header_bytes),
            ]
        )
        server.add_generic_rpc_handlers([self._grpc_handler])
        address = f"{_host(self.config.host)}:{self.config.grpc_port}"
        try:
            if self.config.tls:
                self.grpc_port = server.add_secure_port(address, _grpc_credentials(self.config))
            else:
                self.grpc_port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises instead of returning 0 since 1.5x
            raise OSError(f"cannot bind gRPC server to {address}: {exc}") from None
        if not self.grpc_port:
            raise OSError(f"cannot bind gRPC server to {address}")
        await server.start()
        self._grpc = server

    async def _load(self, loading: Awaitable[None]) -> None:
        await loading
        if self.router is not None:
            await self.router.start()  # the traffic policies of the models just loaded
        if self.monitoring is not None:
            await self.monitoring.start()  # the reference profiles of the versions just loaded
        # Loaded libraries leave ~10^5 long-lived objects; a full collection walking them all took
        # ~90 ms here, the p99 of every request it interrupts. Freezing moves them out of the
        # collector's way; garbage made while serving is still collected.
        gc.collect()
        gc.freeze()
        if self._watcher is not None:
            self._watching = asyncio.create_task(self._watcher.run())
            log.info("watching %s for changes every %s s", self.config.repository, self.config.watch_interval)
        if self._metrics is not None and self.config.stats_dir and self._publishing is None:
            self._publishing = asyncio.create_task(self._metrics.publish())
        if self.config.idle_unload_s > 0 and self._idling is None:
            self._idling = asyncio.create_task(self._unload_idle(self.config.idle_unload_s))

    async def _unload_idle(self, idle_s: float) -> None:
        """Put idle models to sleep, checking a few times per idle period."""
        while True:
            await asyncio.sleep(min(idle_s / 4, 5.0))
            try:
                await self.manager.sleep_idle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unloading idle models failed; trying again later")

    async def wait_loaded(self) -> None:
        """Return once every model of the initial load is READY or FAILED."""
        assert self._loading is not None, "start() first"
        await asyncio.shield(self._loading)

    async def wait_closed(self) -> None:
        """Return when the HTTP server has stopped (after a signal or :meth:`stop`)."""
        assert self._serving is not None, "start() first"
        await self._serving

    async def shutdown(self) -> None:
        """Drain, then :meth:`stop`: readiness false and new requests 503 at once, in-flight ones
        finish for up to ``shutdown_grace_s`` (those still running then get 503)."""
        grace = self.config.shutdown_grace_s
        deadline = time.monotonic() + grace
        self.manager.ready = False
        if self.gate is not None:
            self.gate.close()
            log.info("shutting down: readiness is false, new requests get 503; %d in flight", self.gate.inflight)
            # every reply from now on says Connection: close, so clients leave this server's keep-alive
            # connections; a client that was idle meanwhile gets 503 rather than a reset connection
            # if it sends during the linger
            linger = asyncio.create_task(asyncio.sleep(min(LINGER_S, grace)))
            drained = await self.gate.drained(grace)
            await linger
            if not drained and not await self.gate.drained(0):
                aborted = await self.gate.abort()
                log.warning("the grace period of %g s ended with %d request(s) running; they got 503", grace, aborted)
        await self.stop(grace=max(1.0, deadline - time.monotonic()))

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests (up to ``grace`` s), unload every model."""
        self._watcher = None  # an initial load still running must not start it after this
        for task in (self._watching, self._idling, self._publishing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._uvicorn is not None:
            self._uvicorn.config.timeout_graceful_shutdown = max(1, int(grace))
        stopping: list[Awaitable[None]] = [self._grpc.stop(grace=grace)] if self._grpc is not None else []
        if self._serving is not None:
            stopping.append(self._serving)
        await asyncio.gather(*stopping)
        if self._loading is not None:
            await self._loading
        if self.router is not None:
            await self.router.stop()  # saves what the bandits learnt
        if self.monitoring is not None:
            await self.monitoring.stop()
        if self.dashboard is not None:
            await self.dashboard.stop()
        await self.manager.shutdown(timeout=grace)
        self.pool.shutdown(wait=False)
        # a call abandoned at its deadline, or cut off by the grace period, may never return: wait a
        # moment for the threads to end, then let the process go without them (run_until_signal)
        self.stuck_threads = await asyncio.to_thread(self.pool.still_running, min(grace, 2.0))
        self.manager.catalog.close()  # the registry's database connections
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # the spans still batched
        if self.payloads is not None:
            await asyncio.to_thread(self.payloads.close)  # the entries still queued
        log.info("stopped")

    async def run_until_signal(self) -> None:
        """CLI entry: serve until SIGINT/SIGTERM, then shut down gracefully (:meth:`shutdown`);
        a second signal exits at once. Returns when the process may exit 0."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def on_signal(signum: int) -> None:
            self._signals += 1
            name = signal.Signals(signum).name
            if self._signals > 1:
                log.warning("received %s again: exiting now", name)
                _exit_now(128 + signum)
            log.info("received %s: shutting down (a second signal exits at once)", name)
            stopping.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        await self.start()
        closed = asyncio.create_task(self.wait_closed())
        asked = asyncio.create_task(stopping.wait())
        await asyncio.wait({closed, asked}, return_when=asyncio.FIRST_COMPLETED)
        asked.cancel()
        await self.shutdown()
        if self.stuck_threads:  # the interpreter would wait for them at exit, maybe for ever
            log.warning("exiting with %d runtime call(s) still running, abandoned", self.stuck_threads)
            logging.shutdown()
            os._exit(0)


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, minus its own signal handling: :meth:`Server.run_until_signal` decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _exit_now(status: int) -> None:
    """Leave at once: kill this process's children first (worker processes), so none is orphaned."""
    for child in multiprocessing.active_children():
        child.kill()
    logging.shutdown()
    os._exit(status)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_tls(config: ServerConfig) -> None:
    """Load the TLS files once as the servers will, so that a bad one fails with its name."""
    if not config.tls:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"tls_cert {config.tls_cert!r} and tls_key {config.tls_key!r} must be a PEM certificate and its "
            f"unencrypted private key: {exc.reason or exc}"
        ) from None
    if config.tls_client_ca:
        try:
            context.load_verify_locations(cafile=config.tls_client_ca)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"tls_client_ca {config.tls_client_ca!r} must hold PEM CA certificates: {exc.reason or exc}"
            ) from None


def _grpc_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    client_ca = read(config.tls_client_ca) if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(read(config.tls_key), read(config.tls_cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on for accepted connections only when the
    # listening socket says it is TCP; without it every small reply waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind HTTP server to {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock
