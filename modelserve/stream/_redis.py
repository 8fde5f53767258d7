"""Redis Streams as the broker: XREADGROUP, XADD, XACK and XAUTOCLAIM (Redis 6.2 or newer).

An input entry holds its record either in one field ``value`` (JSON), or as fields
(``XADD in * sepal_length 5.1 ...``: a row whose values are read as JSON where they are JSON).
An answer is an entry ``{id: <input entry id>, value: <JSON answer>}``.

``commit`` writes the answers and acknowledges the inputs in one MULTI/EXEC transaction, so on a
single Redis server (or Sentinel-managed primary) a record is answered and acknowledged together or
not at all: a crash redoes the whole read and writes no duplicate. On Redis Cluster the input and
output keys must share a hash slot for that (name them ``{jobs}:in`` and ``{jobs}:out``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from modelserve.stream._broker import BrokerError, redacted
from modelserve.stream._records import Answer, Record, fields_row

VALUE = b"value"


class RedisStreams:
    def __init__(self, url: str, input: str, group: str, consumer: str) -> None:
        self._url = url
        self._input = input
        self._group = group
        self._consumer = consumer
        self._client: Any = None
        self._backlog = True  # read this consumer's own pending entries first (a restart)
        self._cursor = "0-0"  # XAUTOCLAIM's scan position over the group's pending entries

    @property
    def where(self) -> str:
        return f"Redis {redacted(self._url)} stream {self._input!r} group {self._group!r}"

    async def open(self) -> None:
        try:
            import redis.asyncio as redis
            from redis.exceptions import RedisError, ResponseError
        except ImportError:
            raise BrokerError("Redis Streams need the redis package: pip install 'modelserve[stream]'") from None
        try:
            self._client = redis.Redis.from_url(self._url)
            try:
                await self._client.xgroup_create(self._input, self._group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # the group exists: join it
                    raise
        except (RedisError, OSError, ValueError) as exc:
            raise BrokerError(f"{self.where}: {type(exc).__name__}: {exc}") from None

    async def read(self, count: int, block_ms: int) -> list[Record]:
        if self._backlog:
            records = await self._read("0", count, None)
            if records:
                return await self._counted(records)
            self._backlog = False
        return await self._read(">", count, block_ms)

    async def _read(self, start: str, count: int, block_ms: int | None) -> list[Record]:
        reply = await self._call(
            self._client.xreadgroup, self._group, self._consumer, {self._input: start}, count=count, block=block_ms
        )
        entries = reply[0][1] if reply else []
        return await self._records(entries)

    async def reclaim(self, min_idle_ms: int, count: int) -> list[Record]:
        while True:
            reply = await self._call(
                self._client.xautoclaim,
                self._input,
                self._group,
                self._consumer,
                min_idle_ms,
                start_id=self._cursor,
                count=count,
            )
            cursor = _text(reply[0])
            records = await self._records(reply[1])
            wrapped = cursor == "0-0"
            self._cursor = cursor
            if records or wrapped:
                return await self._counted(records)

    async def _counted(self, records: list[Record]) -> list[Record]:
        """``records`` (delivered before: a backlog or reclaimed) with their delivery counts."""
        if not records:
            return records
        first, last = records[0].id, records[-1].id
        entries = await self._call(
            self._client.xpending_range, self._input, self._group, first, last, len(records) * 2, self._consumer
        )
        counts = {_text(e["message_id"]): int(e["times_delivered"]) for e in entries}
        return [replace(r, deliveries=counts.get(r.id, r.deliveries)) for r in records]

    async def commit(self, answers: Sequence[Answer], done: Sequence[str]) -> None:
        async def transaction() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                for answer in answers:
                    pipe.xadd(answer.target, {b"id": answer.source, VALUE: answer.value})
                if done:
                    pipe.xack(self._input, self._group, *done)
                await pipe.execute()

        await self._call(transaction)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _records(self, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> list[Record]:
        records, gone = [], []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            if fields is None:  # deleted from the stream (XDEL, trimming) while pending: nothing to do
                gone.append(entry_id)
                continue
            value = fields[VALUE] if len(fields) == 1 and VALUE in fields else fields_row(fields)
            records.append(Record(entry_id, value))
        if gone:
            await self._call(self._client.xack, self._input, self._group, *gone)
        return records

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import RedisError

        if self._client is None:
            raise BrokerError(f"{self.where}: not open")
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise BrokerError(f"{self.where}: {type(exc).__name__}: {exc}") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
