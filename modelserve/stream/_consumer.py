"""The consumer loop: read, score, write the answers, acknowledge; reclaim what dead consumers left.

One read at a time: its records are scored (one call through the batcher for the rows), their
answers written and the records acknowledged, in that order, before the next read. A record is
acknowledged only once its answer is written (at-least-once). Errors that are no record's fault (the
model is not loaded yet, the broker is unreachable) are retried, every ``RETRY_S``, with the same
records in hand: nothing is skipped, and nothing is acknowledged meanwhile.

Every ``claim_idle_ms`` (and at start) the consumer takes over the records other members of the
group read but left unacknowledged for that long (a consumer that crashed) and redoes them. A
record handed out more than ``max_deliveries`` times (Redis counts deliveries; Kafka does not) is
answered with an error rather than scored again: a record that crashes every consumer that scores
it would otherwise go round the group for ever.

``stop`` (SIGTERM, SIGINT) ends the loop after the read in hand: a blocking read returns within
``block_ms``; its records are scored, written and acknowledged; then the consumer leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from modelserve.stream._broker import Broker, BrokerError
from modelserve.stream._records import Answer, Record
from modelserve.stream._scorer import TRANSIENT, Scorer
from modelserve.telemetry.logs import FIELDS

log = logging.getLogger("modelserve.stream")

RETRY_S = 1.0  # between attempts after a transient error
REPORT_S = 10.0  # between progress log lines


@dataclass(slots=True)
class StreamStats:
    """Records read (``records_in``), answered with outputs (``records_out``) and with an error
    (``records_failed``), and how many of those read were taken over from other consumers."""

    records_in: int = 0
    records_out: int = 0
    records_failed: int = 0
    reclaimed: int = 0
    reads: int = 0
    version: int | None = None  # the version that answered last

    def fields(self) -> dict[str, int | None]:
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "records_failed": self.records_failed,
            "reclaimed": self.reclaimed,
            "reads": self.reads,
            "model_version": self.version,
        }


@dataclass(frozen=True, slots=True)
class Route:
    output: str
    dead_letter: str | None
    batch_size: int
    block_ms: int
    claim_idle_ms: int
    max_deliveries: int = 5


class Consumer:
    def __init__(self, broker: Broker, scorer: Scorer, route: Route) -> None:
        self._broker = broker
        self._scorer = scorer
        self._route = route
        self.stats = StreamStats()

    async def run(self, stop: asyncio.Event) -> StreamStats:
        """Consume until ``stop`` is set (see the module doc). Raises BrokerError only when the
        broker fails while stopping, with records in hand: they stay pending for the group."""
        route = self._route
        next_claim = 0.0  # at start: take over what dead consumers left
        reported = time.monotonic()
        while not stop.is_set():
            records: list[Record] = []
            if time.monotonic() >= next_claim:
                records = await self._retrying(
                    lambda: self._broker.reclaim(route.claim_idle_ms, route.batch_size), stop
                )
                self.stats.reclaimed += len(records)
                if not records:
                    next_claim = time.monotonic() + max(route.claim_idle_ms / 1000, 1.0)
            if not records:
                records = await self._retrying(lambda: self._broker.read(route.batch_size, route.block_ms), stop)
            if records:
                await self._handle(records, stop)
            if time.monotonic() - reported >= REPORT_S:
                reported = time.monotonic()
                log.info("stream progress", extra={FIELDS: self.stats.fields()})
        return self.stats

    async def _handle(self, records: Sequence[Record], stop: asyncio.Event) -> None:
        self.stats.records_in += len(records)
        self.stats.reads += 1
        limit = self._route.max_deliveries
        poison = {r.id: self._scorer.refuse(r, _crashed(r)) for r in records if r.deliveries > limit}
        to_score = [r for r in records if r.id not in poison]
        while True:
            try:
                version, scored = await self._scorer.score(to_score) if to_score else (self.stats.version, [])
                break
            except TRANSIENT as exc:
                if stop.is_set():  # leave them pending: the group redoes them
                    log.warning("stopping with %d record(s) unscored: %s", len(records), exc.message)
                    return
                log.warning("cannot score yet (%s); retrying in %s s", exc.message, RETRY_S)
                await asyncio.sleep(RETRY_S)
        self.stats.version = version
        by_id = {answer[0]: answer for answer in scored} | poison
        answers = []
        for record in records:
            source, value, failed = by_id[record.id]
            target = self._route.dead_letter if failed and self._route.dead_letter else self._route.output
            answers.append(Answer(source, target, value, record.key, failed))
            if failed:
                self.stats.records_failed += 1
                log.warning("record %s answered with an error", source, extra={FIELDS: {"record": source}})
            else:
                self.stats.records_out += 1
        done = [record.id for record in records]
        await self._commit(answers, done, stop)

    async def _commit(self, answers: list[Answer], done: list[str], stop: asyncio.Event) -> None:
        attempts = 0
        while True:
            try:
                await self._broker.commit(answers, done)
                return
            except BrokerError as exc:
                attempts += 1
                if stop.is_set() and attempts >= 3:
                    raise
                log.warning("%s; retrying in %s s", exc.message, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def _retrying(self, call: Callable[[], Awaitable[list[Record]]], stop: asyncio.Event) -> list[Record]:
        """``call()`` until it answers; [] once ``stop`` is set after a failure."""
        while True:
            try:
                return await call()
            except BrokerError as exc:
                if stop.is_set():
                    return []
                log.warning("%s; retrying in %s s", exc.message, RETRY_S)
                await asyncio.sleep(RETRY_S)


def _crashed(record: Record) -> str:
    return (
        f"record {record.id} was handed out {record.deliveries} times without being answered "
        "(consumers may have crashed on it); not scored again"
    )
