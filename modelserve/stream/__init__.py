"""Stream scoring: records from a message broker in, predictions out (``modelserve stream``).

A consumer joins a consumer group on an input stream (Redis Streams, or a Kafka topic), scores each
read with one model, served exactly as ``modelserve serve`` serves it (a ModelManager: same loading,
validation, runtimes and batcher), writes one answer per record to the output stream (or, for
records that cannot be scored, to ``dead_letter`` when given) and acknowledges the records
after their answers are written: at-least-once delivery (with Redis on one server, answers and
acknowledgements share a transaction, so a crash writes no answer twice; see _redis.py).
See _records.py for what a record and an answer hold, _consumer.py for the loop, _broker.py for
what a broker must do.

The model follows the repository as the server does: a new version directory (hot reload,
core/watcher.py, every ``watch_interval`` seconds and on file-system events) or, with
``registry``, a promotion in the model registry, serves the next read without a restart; the
answers name the version that computed them.

Why a front end of its own rather than a client of a running server: the records never cross
HTTP, a read of N rows is one runtime call, and acknowledging after the write needs the broker's
consumer-group state next to the scoring. Scaling out is starting more consumers with the same
group (the broker shares the records among them).

STYLE deviation: this module builds its ModelManager, catalog and watcher itself, as
``modelserve.batch`` resolves its own versions, instead of going through bootstrap.py: the
stream command has no server to wire, and bootstrap's builders take a ServerConfig. It imports
``repository.registry`` only to open the registry a ``--registry`` consumer follows, as bootstrap
does. Only the consumer's model is loaded; the watcher still reloads any model of the repository
whose files change (core/watcher.py watches the whole repository), which costs memory only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from modelserve.core.catalog import Catalog, PolicyCatalog, RegistryCatalog
from modelserve.core.manager import ModelManager
from modelserve.core.pool import Pool
from modelserve.core.watcher import RepositoryWatcher
from modelserve.errors import ConfigError
from modelserve.protocol.v2 import rest
from modelserve.repository.registry import RegistryStore, Stage, default_url
from modelserve.stream._broker import Broker, BrokerError, open_broker, redacted
from modelserve.stream._consumer import Consumer, Route, StreamStats
from modelserve.stream._records import Answer, Record
from modelserve.stream._scorer import Scorer
from modelserve.telemetry.logs import FIELDS
from modelserve.types import InferRequest, ModelState

log = logging.getLogger("modelserve.stream")

__all__ = [
    "Answer",
    "Broker",
    "BrokerError",
    "Record",
    "StreamConfig",
    "StreamStats",
    "consume",
    "default_consumer",
    "open_broker",
    "run_until_signal",
]


def default_consumer() -> str:
    """``HOST-PID``: unique per process. Give a stable name (a pod name) to have a restarted
    consumer redo its own unacknowledged records at once rather than after ``claim_idle_ms``."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """``batch_size``: records per read (one scoring call for its rows); ``block_ms``: how long a
    read waits for records, and so how long a stop may wait; ``claim_idle_ms``: how long a record
    stays unacknowledged by another consumer before this one redoes it; ``max_deliveries``: a
    record handed out more often than this (consumers crashed on it, Redis counts) is answered
    with an error instead of being scored again; ``watch_interval``: seconds
    between repository polls (0: no hot reload); ``registry``/``registry_url``/``stage``: serve the
    version the registry has in ``stage`` and follow its promotions."""

    repository: Path
    broker: str
    input: str
    output: str
    model: str
    group: str = "modelserve"
    consumer: str = ""
    batch_size: int = 64
    block_ms: int = 1000
    claim_idle_ms: int = 60_000
    max_deliveries: int = 5
    dead_letter: str | None = None
    columns: tuple[str, ...] | None = None
    trust_code: bool = False
    watch_interval: float = 2.0
    registry: bool = False
    registry_url: str | None = None
    stage: str = "production"
    threads: int = 0  # inference threads; 0: one per CPU

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.block_ms < 1:
            raise ConfigError(f"block_ms must be >= 1, got {self.block_ms}")
        if self.claim_idle_ms < 1:
            raise ConfigError(f"claim_idle_ms must be >= 1, got {self.claim_idle_ms}")
        if self.max_deliveries < 1:
            raise ConfigError(f"max_deliveries must be >= 1, got {self.max_deliveries}")
        if self.watch_interval < 0:
            raise ConfigError(f"watch_interval must be >= 0, got {self.watch_interval}")
        if self.stage not in (Stage.PRODUCTION, Stage.STAGING):
            raise ConfigError(f"stage {self.stage!r}: expected production or staging")
        if self.input in (self.output, self.dead_letter):
            raise ConfigError(f"the input stream {self.input!r} cannot also be the output or the dead letter")


async def consume(config: StreamConfig, stop: asyncio.Event, broker: Broker | None = None) -> StreamStats:
    """Load the model, then consume until ``stop`` is set (see the module doc); returns the
    figures. Raises ConfigError (no such model, it cannot load), BrokerError (unreachable at start)."""
    broker = broker or open_broker(config.broker, config.input, config.group, config.consumer or default_consumer())
    pool = Pool(config.threads)
    manager = ModelManager(
        pool, config.repository, config.trust_code, decode_sample=_decode_sample, catalog=_catalog(config)
    )
    watcher = RepositoryWatcher(manager, config.watch_interval) if config.watch_interval > 0 else None
    watching: asyncio.Task[None] | None = None
    try:
        await _load(manager, watcher, config.model)
        await broker.open()
        if watcher is not None:
            watching = asyncio.create_task(watcher.run())
        route = Route(
            config.output,
            config.dead_letter,
            config.batch_size,
            config.block_ms,
            config.claim_idle_ms,
            config.max_deliveries,
        )
        consumer = Consumer(broker, Scorer(manager, config.model, config.columns), route)
        log.info("stream started", extra={FIELDS: _described(config)})
        stats = await consumer.run(stop)
        log.info("stream stopped", extra={FIELDS: stats.fields()})
        return stats
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        await broker.close()
        await manager.shutdown(timeout=10)
        pool.shutdown(wait=False)


async def run_until_signal(config: StreamConfig) -> StreamStats:
    """:func:`consume` until SIGTERM or SIGINT, then stop after the read in hand."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await consume(config, stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _load(manager: ModelManager, watcher: RepositoryWatcher | None, model: str) -> None:
    sources = manager.discover()
    chosen = [source for source in sources if source.name == model]
    if not chosen:
        raise ConfigError(
            f"model {model!r} is not in the repository {manager.repository}; it has {[s.name for s in sources]}"
        )
    if chosen[0].graph:
        raise ConfigError(f"model {model!r} is an inference graph: stream scores one model (not a graph)")
    if watcher is not None:
        watcher.prime()
    await manager.load_repository(chosen)
    statuses = manager.statuses(model)
    if not any(status.state is ModelState.READY for status in statuses):
        reasons = "; ".join(f"version {s.version}: {s.state.value} {s.reason}".strip() for s in statuses)
        raise ConfigError(f"model {model!r} has no version that can serve: {reasons or 'no versions'}")


def _catalog(config: StreamConfig) -> Catalog:
    if not (config.registry or config.registry_url):
        return PolicyCatalog()
    return RegistryCatalog(RegistryStore(config.registry_url or default_url(config.repository)), Stage(config.stage))


def _decode_sample(body: bytes) -> InferRequest:
    return rest.decode_infer_request(body, None)  # warmup files are v2 REST request bodies


def _described(config: StreamConfig) -> dict[str, object]:
    return {
        "broker": redacted(config.broker),
        "input": config.input,
        "output": config.output,
        "dead_letter": config.dead_letter,
        "model": config.model,
        "group": config.group,
        "batch_size": config.batch_size,
    }
