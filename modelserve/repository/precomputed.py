"""Precomputed predictions in a SQL table: written by ``modelserve precompute``, read by the
``precomputed`` runtime.

A table name ``T`` owns three kinds of tables in the database at the URL (SQLite or PostgreSQL,
opened as the registry opens its database):

- ``T_g<N>``: generation N, one row per key: ``(key, model, version, outputs, computed_at)``.
  ``key`` is the primary key (BIGINT for INT64 keys, TEXT otherwise); ``outputs`` is a JSON object
  ``{output name: the row's value}``; ``computed_at`` is ISO 8601 UTC.
- ``T_generations``: one row per generation: the model and version that computed it, its
  :class:`Layout` (the key's datatype and the outputs' names, datatypes and shapes) and whether it
  is complete.
- ``T_current``: one row naming the generation that lookups read.

Why generations: a refresh writes a whole new ``T_g<N>`` (a transaction per batch, rows upserted)
while lookups keep reading the current one, then switches ``T_current`` in one transaction. A
lookup reads one generation's table in one statement, so it never sees a half-written refresh or
two versions at once. After a switch, generations older than the previous one are dropped: a
reader that read the pointer just before the switch still finds its table.

Readers cache the pointer for ``pointer_ttl_s`` (default 1 s): a switch is seen within that time.
Table names are restricted to letters, digits and ``_`` (they are spliced into DDL).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    func,
    insert,
    inspect,
    make_url,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from modelserve.errors import ConfigError, NotFound, Unavailable
from modelserve.repository.registry._database import WRITE, open_engine, shown

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
KEY_DATATYPES = ("INT64", "BYTES")


@dataclass(frozen=True, slots=True)
class OutputLayout:
    name: str
    datatype: str
    shape: tuple[int, ...]  # with the batch dimension first (-1)


@dataclass(frozen=True, slots=True)
class Layout:
    key_datatype: str  # "INT64" or "BYTES"
    outputs: tuple[OutputLayout, ...]

    def to_json(self) -> str:
        doc = {"key": self.key_datatype, "outputs": [[o.name, o.datatype, list(o.shape)] for o in self.outputs]}
        return orjson.dumps(doc).decode()

    @staticmethod
    def from_json(text: str) -> Layout:
        doc = orjson.loads(text)
        outputs = tuple(OutputLayout(str(n), str(d), tuple(int(s) for s in shape)) for n, d, shape in doc["outputs"])
        return Layout(str(doc["key"]), outputs)


@dataclass(frozen=True, slots=True)
class Generation:
    number: int
    model: str
    version: int
    layout: Layout
    rows: int
    created_at: str


@dataclass(frozen=True, slots=True)
class Row:
    key: int | str
    version: int
    outputs: dict[str, Any]  # {output name: the JSON value stored}
    computed_at: str


class PrecomputedTable:
    """The generations of table ``table`` in the database at ``url``. Thread-safe."""

    def __init__(self, url: str, table: str, *, busy_timeout_ms: int = 5000, pointer_ttl_s: float = 1.0) -> None:
        if not _NAME.fullmatch(table):
            raise ConfigError(f"precomputed table name {table!r}: expected letters, digits and _ (at most 41)")
        self.table = table
        self.where = f"{shown(make_url(url))} table {table}"
        self._engine: Engine = open_engine(url, busy_timeout_ms)
        self._ttl = pointer_ttl_s
        self._lock = threading.Lock()
        self._pointer: tuple[float, Generation] | None = None  # (monotonic time read, generation)
        self._meta = MetaData()
        self._generations = Table(
            f"{table}_generations",
            self._meta,
            Column("generation", Integer, primary_key=True, autoincrement=False),
            Column("model", Text, nullable=False),
            Column("version", Integer, nullable=False),
            Column("layout", Text, nullable=False),
            Column("rows", Integer, nullable=False),
            Column("created_at", Text, nullable=False),
            Column("complete", Boolean, nullable=False),
        )
        self._current = Table(
            f"{table}_current",
            self._meta,
            Column("slot", Integer, primary_key=True, autoincrement=False),
            Column("generation", Integer, nullable=False),
        )
        self._data: dict[int, Table] = {}

    def close(self) -> None:
        self._engine.dispose()

    # -- writing -------------------------------------------------------------------------------

    def begin_generation(self, model: str, version: int, layout: Layout) -> int:
        """Create the next generation's empty table; returns its number. Not visible until switched."""
        with self._write("start a generation") as connection:
            self._meta.create_all(connection, tables=[self._generations, self._current])
            number = (
                int(connection.execute(select(func.coalesce(func.max(self._generations.c.generation), 0))).scalar_one())
                + 1
            )
            connection.execute(
                insert(self._generations).values(
                    generation=number,
                    model=model,
                    version=version,
                    layout=layout.to_json(),
                    rows=0,
                    created_at=_now(),
                    complete=False,
                )
            )
            self._data_table(number, layout.key_datatype).create(connection)
        return number

    def write(self, number: int, key_datatype: str, model: str, version: int, rows: Iterable[tuple[Any, str]]) -> int:
        """Upsert ``(key, outputs JSON)`` rows into generation ``number`` in one transaction."""
        computed_at = _now()
        values = [
            {"key": key, "model": model, "version": version, "outputs": outputs, "computed_at": computed_at}
            for key, outputs in rows
        ]
        if not values:
            return 0
        table = self._data_table(number, key_datatype)
        with self._write(f"write {len(values)} rows to generation {number}") as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={c: statement.excluded[c] for c in ("model", "version", "outputs", "computed_at")},
            )
            connection.execute(statement, values)
            connection.execute(
                update(self._generations)
                .where(self._generations.c.generation == number)
                .values(rows=self._generations.c.rows + len(values))
            )
        return len(values)

    def switch(self, number: int) -> None:
        """Make generation ``number`` the one lookups read (one transaction); drop all but it and
        the previous one."""
        with self._write(f"switch to generation {number}") as connection:
            connection.execute(
                update(self._generations).where(self._generations.c.generation == number).values(complete=True)
            )
            previous = connection.execute(select(self._current.c.generation).where(self._current.c.slot == 1)).scalar()
            if previous is None:
                connection.execute(insert(self._current).values(slot=1, generation=number))
            else:
                connection.execute(update(self._current).where(self._current.c.slot == 1).values(generation=number))
            keep = {number, previous}
            stale = [
                g
                for g in connection.execute(select(self._generations.c.generation)).scalars()
                if g not in keep and g < number
            ]
            for g in stale:
                connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{self.table}_g{g}"')
            if stale:
                connection.execute(delete(self._generations).where(self._generations.c.generation.in_(stale)))
        with self._lock:
            self._pointer = None

    def abandon(self, number: int) -> None:
        """Drop an unfinished generation (a failed refresh)."""
        with self._write(f"drop generation {number}") as connection:
            connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{self.table}_g{number}"')
            connection.execute(delete(self._generations).where(self._generations.c.generation == number))

    # -- reading -------------------------------------------------------------------------------

    def current(self, *, fresh: bool = False) -> Generation:
        """The generation lookups read (cached for ``pointer_ttl_s``). Raises NotFound if none."""
        with self._lock:
            if not fresh and self._pointer is not None and time.monotonic() - self._pointer[0] < self._ttl:
                return self._pointer[1]
        with self._read("read the current generation") as connection:
            if not inspect(connection).has_table(self._current.name):
                raise NotFound(f"precomputed {self.where}: no generation yet; run modelserve precompute")
            g = self._generations
            row = connection.execute(
                select(g)
                .join(self._current, self._current.c.generation == g.c.generation)
                .where(self._current.c.slot == 1)
            ).one_or_none()
        if row is None:
            raise NotFound(f"precomputed {self.where}: no generation yet; run modelserve precompute")
        generation = Generation(
            row.generation, row.model, row.version, Layout.from_json(row.layout), row.rows, row.created_at
        )
        with self._lock:
            self._pointer = (time.monotonic(), generation)
        return generation

    def lookup(self, keys: Sequence[int | str]) -> tuple[Generation, dict[int | str, Row]]:
        """The current generation and its rows for ``keys`` (absent keys are left out), read in
        one statement. Raises NotFound if no generation exists, Unavailable if the database fails."""
        for attempt in (0, 1):
            generation = self.current(fresh=attempt > 0)
            table = self._data_table(generation.number, generation.layout.key_datatype)
            wanted = list(dict.fromkeys(keys))
            try:
                with self._engine.connect() as connection:
                    found = connection.execute(
                        select(table.c.key, table.c.version, table.c.outputs, table.c.computed_at).where(
                            table.c.key.in_(wanted)
                        )
                    ).all()
            except SQLAlchemyError as exc:
                if attempt == 0:  # the table was dropped after two switches within the pointer's ttl
                    continue
                raise _unavailable(f"look up {len(wanted)} keys in {self.where}", exc) from exc
            return generation, {r.key: Row(r.key, r.version, orjson.loads(r.outputs), r.computed_at) for r in found}
        raise AssertionError("unreachable")

    # -- internals -----------------------------------------------------------------------------

    def _data_table(self, number: int, key_datatype: str) -> Table:
        with self._lock:
            table = self._data.get(number)
            if table is None:
                key_type = BigInteger if key_datatype == "INT64" else Text
                table = Table(
                    f"{self.table}_g{number}",
                    MetaData(),
                    Column("key", key_type, primary_key=True, autoincrement=False),
                    Column("model", Text, nullable=False),
                    Column("version", Integer, nullable=False),
                    Column("outputs", Text, nullable=False),
                    Column("computed_at", Text, nullable=False),
                )
                self._data[number] = table
            return table

    @contextmanager
    def _write(self, operation: str) -> Iterator[Connection]:
        try:
            with self._engine.execution_options(**{WRITE: True}).begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise _unavailable(f"{operation} in {self.where}", exc) from exc

    @contextmanager
    def _read(self, operation: str) -> Iterator[Connection]:
        try:
            with self._engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise _unavailable(f"{operation} in {self.where}", exc) from exc


def encode_outputs(outputs: Mapping[str, Any]) -> str:
    """One row's outputs as the JSON stored (numpy scalars and arrays become JSON values)."""
    return orjson.dumps(outputs, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _unavailable(operation: str, exc: SQLAlchemyError) -> Unavailable:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return Unavailable(f"{operation}: database error: {lines[0] if lines else type(cause).__name__}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
