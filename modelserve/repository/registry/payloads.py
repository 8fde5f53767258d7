"""The payload log as a table in the registry database (``serve --payload-log-sink registry``).

``PayloadTable`` is a ``telemetry.payloads.PayloadWriter``: the payload sink's writer thread hands
it batches of entries, and each batch is inserted in one transaction into ``payloads`` (migration
0003). Its contract:

- Opening migrates the schema, as ``RegistryStore`` does. A URL this registry cannot use raises
  ConfigError at once; a database that cannot be opened (a directory that cannot be created, a
  server that is down) does not: every ``write`` raises RegistryError until it can, so the sink
  counts those entries as failed. A failed open is retried at most once a second
  (``RETRY_OPEN_S``); meanwhile writes fail without touching the database.
- Retention: at most ``max_rows`` rows (default 1,000,000) are kept. Pruning is a delete of every
  row whose id is ``max_rows`` or more below the newest, run in the transaction of the first batch
  and then of every batch that brings the rows written since the last prune to ``prune_every``
  (``max_rows // 100``, from 1 to 10,000): between prunes the table may exceed ``max_rows`` by
  that much, and never by more. Ids that a failed transaction consumed count as kept rows, so
  the table may hold fewer than ``max_rows``. Several servers writing one database each prune it.
- ``write`` blocks while another writer holds the database's lock, up to ``busy_timeout_ms``:
  the sink's thread waits, never a request.

Reads (``read``, ``follow``) give the same dicts as ``telemetry.payloads.read`` gives for the
files, so ``modelserve logs`` prints the same lines from either sink. Tensor data is stored as
the files hold it: a NaN or infinity becomes null.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Select, delete, func, insert, make_url, select

from modelserve.errors import InvalidInput
from modelserve.repository.registry._database import WRITE, migrate, open_engine, shown
from modelserve.repository.registry.errors import RegistryError
from modelserve.repository.registry.schema import PayloadRow
from modelserve.repository.registry.store import _database_errors

DEFAULT_MAX_ROWS = 1_000_000
RETRY_OPEN_S = 1.0  # after a failed open, writes fail at once for this long before the next try


class PayloadTable:
    """Writes payload log entries into the ``payloads`` table of the registry database at ``url``.

    Called by one thread (the payload sink's); see the module docstring for retention and errors.
    """

    def __init__(self, url: str, *, max_rows: int = DEFAULT_MAX_ROWS, busy_timeout_ms: int = 5000) -> None:
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise InvalidInput(f"payload log max_rows {max_rows!r}: expected an integer >= 1")
        self.max_rows = max_rows
        self.prune_every = max(1, min(10_000, max_rows // 100))
        self._since_prune = self.prune_every  # the first batch prunes: a lowered max_rows applies at once
        self._url = url
        self._busy_timeout_ms = busy_timeout_ms
        self._engine: Engine | None = None
        self._failed_open: tuple[float, str] | None = None  # (monotonic time, message)
        with suppress(RegistryError):  # the database may come back: each write retries, the sink counts failures
            self._open()
        self.where = shown(make_url(url))

    def write(self, docs: list[dict[str, Any]]) -> None:
        """Insert ``docs`` (``telemetry.payloads`` entries) in one transaction, pruning now and then.

        Raises RegistryError if the database cannot be opened or the insert fails: nothing is stored.
        """
        rows = [_row(doc) for doc in docs]
        engine = self._open()
        with (
            _database_errors(f"write {len(rows)} payload log entries to {self.where}"),
            engine.execution_options(**{WRITE: True}).begin() as connection,
        ):
            connection.execute(insert(PayloadRow), rows)
            self._since_prune += len(rows)
            if self._since_prune >= self.prune_every:
                prune(connection, self.max_rows)
                self._since_prune = 0

    def close(self) -> None:
        """Close the pooled connections. Idempotent."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _open(self) -> Engine:
        if self._engine is not None:
            return self._engine
        if self._failed_open is not None and time.monotonic() - self._failed_open[0] < RETRY_OPEN_S:
            raise RegistryError(self._failed_open[1])
        try:
            self._engine = _migrated(self._url, self._busy_timeout_ms)
        except RegistryError as exc:
            self._failed_open = (time.monotonic(), exc.message)
            raise
        self._failed_open = None
        return self._engine


def prune(connection: Connection, max_rows: int) -> int:
    """Delete the rows whose id is ``max_rows`` or more below the newest; how many went."""
    newest = connection.scalar(select(func.max(PayloadRow.id)))
    if newest is None or newest <= max_rows:
        return 0
    return connection.execute(delete(PayloadRow).where(PayloadRow.id <= newest - max_rows)).rowcount


def read(
    url: str, model: str | None = None, since: float | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Entries of ``model`` (None: all) at or after ``since`` (``time.time()`` seconds; None: all),
    oldest first; only the newest ``limit`` of them if given. Opening migrates the schema.
    Raises RegistryError, ConfigError, InvalidInput (``limit``)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInput(f"payload log limit {limit!r}: expected an integer >= 1 or None")
    with _engine(url) as engine, _reading(engine) as connection:
        return [_doc(row) for row in _newest(connection, model, since, limit)]


def follow(url: str, model: str | None = None, lines: int = 10, interval: float = 1.0) -> Iterator[dict[str, Any]]:
    """The newest ``lines`` entries of ``model`` (None: all), oldest first, then, polling every
    ``interval`` seconds, each entry inserted after them, in insertion order. Never ends; closing
    the iterator closes the database. Raises as ``read`` does."""
    with _engine(url) as engine:
        with _reading(engine) as connection:
            shown_rows = _newest(connection, model, None, lines)
            last = connection.scalar(_filtered(select(func.max(PayloadRow.id)), model, None)) or 0
        yield from (_doc(row) for row in shown_rows)
        while True:
            time.sleep(interval)
            with _reading(engine) as connection:
                query = _filtered(select(PayloadRow), model, None).where(PayloadRow.id > last)
                fresh = list(connection.execute(query.order_by(PayloadRow.id).limit(10_000)))
            for row in fresh:
                last = row.id
                yield _doc(row)


def _newest(connection: Connection, model: str | None, since: float | None, limit: int | None) -> list[Any]:
    query = _filtered(select(PayloadRow), model, since).order_by(PayloadRow.at.desc(), PayloadRow.id.desc())
    return list(reversed(list(connection.execute(query.limit(limit)))))


def _filtered(query: Select[Any], model: str | None, since: float | None) -> Select[Any]:
    if model is not None:
        query = query.where(PayloadRow.model == model)
    if since is not None:
        query = query.where(PayloadRow.at >= datetime.fromtimestamp(since, UTC))
    return query


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = _migrated(url, 5000)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    with _database_errors(f"read the payload log in {shown(engine.url)}"), engine.connect() as connection:
        yield connection


def _migrated(url: str, busy_timeout_ms: int) -> Engine:
    """An engine for ``url`` with an up-to-date schema. Raises ConfigError, RegistryError."""
    engine = open_engine(url, busy_timeout_ms)
    try:
        with _database_errors(f"open registry {shown(engine.url)}"):
            migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": datetime.fromtimestamp(float(doc["time"]), UTC),
        "request_id": doc["request_id"],
        "model": doc["model"],
        "version": doc["version"],
        "protocol": doc["protocol"],
        # through orjson, as the files are written: NaN and infinity become null (which PostgreSQL's
        # json type needs), and what is read back is exactly what a file would hold
        "inputs": orjson.loads(orjson.dumps(doc["inputs"])),
        "outputs": orjson.loads(orjson.dumps(doc["outputs"])),
    }


def _doc(row: Any) -> dict[str, Any]:
    """A row as ``telemetry.payloads._document`` made it (``time`` as microsecond seconds)."""
    return {
        "time": row.at.timestamp(),
        "request_id": row.request_id,
        "model": row.model,
        "version": row.version,
        "protocol": row.protocol,
        "inputs": row.inputs,
        "outputs": row.outputs,
    }
