"""Kafka as the broker, through aiokafka (``pip install 'modelserve[kafka]'``), imported when a
KafkaBroker is made.

The consumer joins group ``group`` with automatic commits off and starts a new group at the
earliest offset. ``commit`` produces the answers (acks=all, idempotent producer), waits for every
one to be acknowledged by the brokers, then commits each partition's offset past the records done:
at-least-once (a crash between the two produces the answers again). A record's id is
``topic/partition/offset``; its message key is the answer's key, so answers of one key keep their
order on one partition.

``reclaim`` has nothing to do: when a member dies, the group coordinator gives its partitions to
the others after ``session.timeout.ms``, and they resume at the last committed offset.

Tested here for construction and configuration errors only (no Kafka broker runs in CI); the
Redis Streams broker carries the end-to-end tests of the consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from modelserve.errors import ConfigError
from modelserve.stream._broker import BrokerError
from modelserve.stream._records import Answer, Record

EXTRA = "pip install 'modelserve[kafka]'"

log = logging.getLogger("modelserve.stream")


def bootstrap_servers(url: str) -> list[str]:
    """``kafka://h1:9092,h2:9092`` as ["h1:9092", "h2:9092"]. Raises ConfigError."""
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ConfigError(f"broker {url!r}: a Kafka URL is kafka://host:port[,host:port...]")
    servers = [s.strip() for s in parts.netloc.split(",") if s.strip()]
    if not servers:
        raise ConfigError(f"broker {url!r}: no bootstrap server; expected kafka://host:port[,host:port...]")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"broker {url!r}: bootstrap server {server!r} is not host:port")
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"broker {url!r}: a Kafka URL has no path or query; expected kafka://host:port")
    return servers


class KafkaBroker:
    def __init__(self, url: str, input: str, group: str, consumer: str) -> None:
        """Raises ConfigError for a bad URL or when aiokafka is not installed."""
        self._servers = bootstrap_servers(url)
        try:
            import aiokafka  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:
            raise ConfigError(f"the Kafka broker needs aiokafka: {EXTRA}") from None
        self._kafka: Any = aiokafka
        self._input = input
        self._group = group
        self._client_id = consumer
        self._consumer: Any = None
        self._producer: Any = None
        self._held: dict[str, tuple[Any, int]] = {}  # record id -> (TopicPartition, offset), read not committed

    @property
    def where(self) -> str:
        return f"Kafka {','.join(self._servers)} topic {self._input!r} group {self._group!r}"

    async def open(self) -> None:
        from aiokafka.errors import KafkaError  # type: ignore[import-untyped, import-not-found, unused-ignore]

        try:
            self._consumer = self._kafka.AIOKafkaConsumer(
                self._input,
                bootstrap_servers=self._servers,
                group_id=self._group,
                client_id=self._client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await self._consumer.start()
            self._producer = self._kafka.AIOKafkaProducer(
                bootstrap_servers=self._servers, client_id=self._client_id, acks="all", enable_idempotence=True
            )
            await self._producer.start()
        except (KafkaError, OSError) as exc:
            await self.close()
            raise BrokerError(f"{self.where}: {type(exc).__name__}: {exc}") from None

    async def read(self, count: int, block_ms: int) -> list[Record]:
        from aiokafka.errors import KafkaError  # type: ignore[import-untyped, import-not-found, unused-ignore]

        try:
            batches = await self._open(self._consumer).getmany(timeout_ms=block_ms, max_records=count)
        except KafkaError as exc:
            raise BrokerError(f"{self.where}: {type(exc).__name__}: {exc}") from None
        records = []
        for partition, messages in batches.items():
            for message in messages:
                record_id = f"{partition.topic}/{partition.partition}/{message.offset}"
                self._held[record_id] = (partition, message.offset)
                records.append(Record(record_id, message.value or b"", message.key))
        return records

    async def reclaim(self, min_idle_ms: int, count: int) -> list[Record]:
        return []  # the group coordinator reassigns a dead member's partitions (module doc)

    async def commit(self, answers: Sequence[Answer], done: Sequence[str]) -> None:
        from aiokafka.errors import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
            CommitFailedError,
            IllegalStateError,
            KafkaError,
        )

        producer, consumer = self._open(self._producer), self._open(self._consumer)
        try:
            sent = [await producer.send(a.target, a.value, key=a.key) for a in answers]
            for delivery in sent:
                await delivery
            offsets: dict[Any, int] = {}
            for record_id in done:
                partition, offset = self._held[record_id]
                offsets[partition] = max(offsets.get(partition, 0), offset + 1)
            if offsets:
                await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced: these partitions are another member's now, which resumes at the
            # last committed offset and redoes the records (their answers are written twice). Retrying
            # cannot succeed, so the records are let go rather than retried
            log.warning("%s: %d record(s) left to the group after a rebalance (%s)", self.where, len(done), exc)
        except KafkaError as exc:
            raise BrokerError(f"{self.where}: {type(exc).__name__}: {exc}") from None
        for record_id in done:
            self._held.pop(record_id, None)

    async def close(self) -> None:
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        if producer is not None:
            await producer.stop()
        if consumer is not None:
            await consumer.stop()

    def _open(self, client: Any) -> Any:
        if client is None:
            raise BrokerError(f"{self.where}: not open")
        return client
