"""Engines and migrations: turn the caller's URL into a configured engine with an up-to-date schema.

Two backends:

- SQLite (``sqlite:///path/registry.db``; the parent directory is created). Every connection gets
  WAL (readers never block the writer), ``foreign_keys=ON`` and ``busy_timeout``. pysqlite's own
  transaction handling is switched off so that this module issues BEGIN itself: writes begin with
  ``BEGIN IMMEDIATE``, which takes the write lock up front, so two writers queue on the busy timeout
  instead of one failing when it upgrades a read lock. That makes every write serializable.
- PostgreSQL through psycopg 3 (``postgresql+psycopg://`` or plain ``postgresql://``). Every
  connection gets ``lock_timeout`` = the same busy timeout, so a write stuck behind another
  transaction fails with a message instead of hanging.

Anything else raises ConfigError naming the URL (password hidden) and what is accepted.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError

from modelserve.errors import ConfigError
from modelserve.repository.registry.errors import RegistryError

MIGRATIONS = Path(__file__).parent / "migrations"
WRITE = "modelserve_registry_write"  # execution option: this connection's transactions write
EXPECTED_URLS = "expected sqlite:///path/to/registry.db or postgresql+psycopg://user:password@host/database"
# pg_advisory_xact_lock key that serializes migrations of one database ("modelreg" in ASCII)
MIGRATION_LOCK = 0x6D6F64656C726567


def open_engine(url: str, busy_timeout_ms: int) -> Engine:
    """A configured engine for ``url``. Raises ConfigError for a URL this registry cannot use."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite":
        _make_parent(parsed)
        engine = create_engine(parsed)
        event.listen(engine, "connect", partial(_sqlite_connect, busy_timeout_ms))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except ImportError as exc:  # the DBAPI module is imported here
        raise ConfigError(
            f"registry database {shown(parsed)}: PostgreSQL needs psycopg 3 ({exc}); "
            "install the extra: pip install 'modelserve[postgres]'"
        ) from exc
    event.listen(engine, "connect", partial(_postgres_connect, busy_timeout_ms))
    return engine


def shown(url: URL) -> str:
    """The URL as it may appear in messages and logs: password hidden."""
    return url.render_as_string(hide_password=True)


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"registry database URL is not a URL; {EXPECTED_URLS}") from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
            raise ConfigError(f"registry database {shown(parsed)}: in-memory SQLite is not shared; {EXPECTED_URLS}")
        return parsed
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(f"registry database {shown(parsed)}: unsupported database {parsed.drivername!r}; {EXPECTED_URLS}")


def _make_parent(url: URL) -> None:
    if url.query.get("uri"):  # a file: URI is the caller's business
        return
    path = Path(url.database or "")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryError(f"open registry {shown(url)}: cannot create directory {str(path.parent)!r}: {exc}") from exc


def _sqlite_connect(busy_timeout_ms: int, dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # pysqlite must not BEGIN on its own: _sqlite_begin does
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Switching a new database to WAL needs an exclusive lock, and SQLite answers "database is
        # locked" at once, without its busy handler, while another connection is switching or
        # migrating it: retry for as long as the busy timeout allows.
        deadline = time.monotonic() + busy_timeout_ms / 1000
        while True:
            try:
                cursor.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _postgres_connect(busy_timeout_ms: int, dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = {int(busy_timeout_ms)}")
    dbapi_connection.commit()  # SET outside a transaction block: it lasts for the session


def migrate(engine: Engine) -> None:
    """Apply pending migrations in one transaction. Concurrent openers wait for each other."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    with engine.execution_options(**{WRITE: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        # alembic logs its dialect at INFO on every open (and each step): too chatty for a server log
        quiet = logging.getLogger("alembic.runtime.migration")
        level, quiet.level = quiet.level, max(quiet.getEffectiveLevel(), logging.WARNING)
        try:
            command.upgrade(config, "head")
        except CommandError as exc:  # e.g. a revision this code does not know: a newer modelserve
            raise RegistryError(
                f"migrate registry {shown(engine.url)}: {exc}; is the database from a newer modelserve?"
            ) from exc
        finally:
            quiet.setLevel(level)
