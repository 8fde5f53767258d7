"""What the consumer needs from a message broker, and the broker a URL names.

A broker is read as one member of a consumer group: the records it hands out stay *pending*
(Redis: in the group's pending entries list; Kafka: past the committed offset) until
acknowledged, so a consumer that dies before acknowledging leaves them to be redone.

Writing the answers and acknowledging the records are one call, ``commit``, rather than two, so
that a broker that can make them atomic does (Redis: one MULTI/EXEC); one that cannot writes, waits
for the writes to be durable, then acknowledges (Kafka).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from modelserve.errors import ConfigError, ErrorCode, ModelServeError
from modelserve.stream._records import Answer, Record

SCHEMES = ("redis", "rediss", "unix", "kafka")


class BrokerError(ModelServeError):
    """The broker cannot be reached, or refused an operation; the message names the broker."""

    code = ErrorCode.UNAVAILABLE


class Broker(Protocol):
    async def open(self) -> None:
        """Connect, and create the consumer group (and the input stream) if missing: a new group
        starts at the beginning of the input. Raises BrokerError."""

    async def read(self, count: int, block_ms: int) -> list[Record]:
        """Up to ``count`` records for this consumer, waiting up to ``block_ms`` for the first
        (blocks that long when there are none). After a restart under the same consumer name, the
        records it had not acknowledged come first. Raises BrokerError."""

    async def reclaim(self, min_idle_ms: int, count: int) -> list[Record]:
        """Up to ``count`` records another consumer (a dead one) read but has not acknowledged for
        ``min_idle_ms`` or more, now this consumer's; [] when there are none. Raises BrokerError."""

    async def commit(self, answers: Sequence[Answer], done: Sequence[str]) -> None:
        """Write ``answers`` (each to its ``target``), then acknowledge the records ``done`` names:
        an acknowledged record always has its answer written. Raises BrokerError (then nothing was
        acknowledged, and some answers may have been written: they will be written again)."""

    async def close(self) -> None:
        """Disconnect. Unacknowledged records stay pending for the group."""


def open_broker(url: str, input: str, group: str, consumer: str) -> Broker:
    """The broker ``url`` names: ``redis://host:port/db``, ``rediss://`` (TLS), ``unix:///path.sock``
    (Redis Streams), or ``kafka://host:port[,host:port...]`` (``pip install 'modelserve[kafka]'``).
    Cheap: nothing connects before ``open``. Raises ConfigError for an unknown scheme or a missing extra."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"broker {url!r}: expected a URL with a scheme of {list(SCHEMES)}")
    if not input or not group or not consumer:
        raise ConfigError("the input stream, the group and the consumer name must not be empty")
    if scheme == "kafka":
        from modelserve.stream._kafka import KafkaBroker

        return KafkaBroker(url, input, group, consumer)
    from modelserve.stream._redis import RedisStreams

    return RedisStreams(url, input, group, consumer)


def redacted(url: str) -> str:
    """``url`` without its password (logs and messages name the broker, never its secret)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
