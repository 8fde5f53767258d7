"""The payload log's database table (repository/registry/payloads.py) on SQLite and on PostgreSQL
(the ``registry_url`` fixture): batches, retention, reads, and the migration from 0002."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, insert, inspect, make_url, text

from modelserve.errors import ConfigError, InvalidInput
from modelserve.repository.registry import AuditAction, RegistryError, RegistryStore
from modelserve.repository.registry import payloads as table
from modelserve.repository.registry._database import MIGRATIONS
from modelserve.repository.registry.payloads import PayloadTable
from modelserve.repository.registry.schema import AuditRow, Base, RoutingRow
from modelserve.telemetry.payloads import Entry, PayloadSink, _document
from modelserve.telemetry.payloads import read as read_files

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # the newest migration


@contextmanager
def _raw(url: str) -> Iterator[Connection]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _count(url: str) -> int:
    with _raw(url) as connection:
        return int(connection.execute(text("SELECT count(*) FROM payloads")).scalar_one())


def _entry(i: int, at: float, model: str = "m", **extra: Any) -> Entry:
    x = np.array([[i, i + 0.5, -1]], dtype=np.float32)
    return Entry(at, f"r{i}", model, "1", "rest", [("x", "FP32", x)], [("y", "FP32", x * 2)], **extra)


def _doc(i: int, at: float, model: str = "m") -> dict[str, Any]:
    return _document(_entry(i, at, model))


def test_a_batch_is_stored_and_read_back_as_the_files_hold_it(registry_url: str, tmp_path: Path) -> None:
    now = time.time()
    text_input = np.array([b"caf\xc3\xa9", b"\xff\xfe"], dtype=object)  # UTF-8, and bytes that are not
    odd = np.array([math.nan, math.inf, 2**-30], dtype=np.float64)
    u64 = np.array([2**64 - 1], dtype=np.uint64)
    entries = [
        _entry(0, now - 1.2345678),
        Entry(now, None, "ünï", "7", "grpc", [("s", "BYTES", text_input), ("u", "UINT64", u64)], [("o", "FP64", odd)]),
        _entry(2, now + 0.5, redact=frozenset({"x"})),
    ]
    writer = PayloadTable(registry_url)
    writer.write([_document(e) for e in entries])
    writer.close()
    files = PayloadSink(tmp_path)
    for entry in entries:
        files.put(entry)
    files.close()
    from_table, from_files = table.read(registry_url), read_files(tmp_path)
    assert from_table == from_files  # the same numbers, key order and all
    assert [list(d) for d in from_table] == [list(d) for d in from_files]
    assert from_table[1]["inputs"]["s"]["data"] == ["café", {"b64": "//4="}]
    assert from_table[1]["outputs"]["o"]["data"] == [None, None, 2**-30]
    assert from_table[2]["inputs"]["x"]["data"] == "[redacted]"


def test_one_write_is_one_transaction(registry_url: str) -> None:
    writer = PayloadTable(registry_url)
    writer.write([_doc(0, 1.0)])
    bad = _doc(2, 2.0)
    bad["model"] = None  # NOT NULL: the database refuses this row, so the whole batch goes
    with pytest.raises(RegistryError, match=r"write 2 payload log entries to .*database error"):
        writer.write([_doc(1, 1.5), bad])
    writer.write([_doc(3, 3.0)])  # the writer goes on
    writer.close()
    assert [d["request_id"] for d in table.read(registry_url)] == ["r0", "r3"]


def test_reads_filter_by_model_and_time_oldest_first(registry_url: str) -> None:
    writer = PayloadTable(registry_url)
    writer.write([_doc(0, 100.0, "a"), _doc(1, 200.0, "b"), _doc(2, 300.0, "a")])
    writer.write([_doc(3, 250.0, "a"), _doc(4, 400.0, "a")])  # written later, yet older than r2
    writer.close()

    def ids(**query: Any) -> list[str]:
        return [d["request_id"] for d in table.read(registry_url, **query)]

    assert ids() == ["r0", "r1", "r3", "r2", "r4"]  # by time
    assert ids(model="a") == ["r0", "r3", "r2", "r4"]
    assert ids(model="a", since=250.0) == ["r3", "r2", "r4"]  # at or after
    assert ids(since=250.000001) == ["r2", "r4"]
    assert ids(model="a", limit=2) == ["r2", "r4"]  # the newest two, oldest first
    assert ids(model="nobody") == []
    with pytest.raises(InvalidInput, match="limit 0"):
        table.read(registry_url, limit=0)


def test_retention_keeps_the_newest_rows(registry_url: str) -> None:
    writer = PayloadTable(registry_url, max_rows=200)
    assert writer.prune_every == 2  # max_rows // 100
    at = itertools.count(1.0)
    for start in range(0, 1000, 50):
        writer.write([_doc(i, next(at)) for i in range(start, start + 50)])
        assert _count(registry_url) <= 200 + 50  # pruned in the transaction of each batch here
    writer.close()
    assert [d["request_id"] for d in table.read(registry_url)] == [f"r{i}" for i in range(800, 1000)]


def test_pruning_is_occasional(registry_url: str) -> None:
    writer = PayloadTable(registry_url, max_rows=10_000)
    assert writer.prune_every == 100
    writer.write([_doc(i, float(i)) for i in range(10_050)])  # the first batch prunes, after its insert
    assert _count(registry_url) == 10_000
    writer.write([_doc(i, float(i)) for i in range(10_050, 10_140)])  # 90 since the prune: none
    assert _count(registry_url) == 10_090
    writer.write([_doc(10_140, 10_140.0)] * 10)  # 100: prune
    writer.close()
    assert _count(registry_url) == 10_000
    # a lower limit applies from the first batch of a new writer
    smaller = PayloadTable(registry_url, max_rows=5)
    smaller.write([_doc(1, 1.0)])
    smaller.close()
    assert _count(registry_url) == 5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidInput, match="max_rows 0"):
        PayloadTable("sqlite:////tmp/unused.db", max_rows=0)
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        PayloadTable("mysql://u:p@h/db")


def test_an_unopenable_database_fails_writes_until_it_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    url = f"sqlite:///{blocker / 'sub' / 'registry.db'}"
    writer = PayloadTable(url)  # does not raise: requests must go on
    with pytest.raises(RegistryError, match="cannot create directory"):
        writer.write([_doc(0, 0.0)])
    blocker.unlink()
    with pytest.raises(RegistryError, match="cannot create directory"):
        writer.write([_doc(1, 1.0)])  # within RETRY_OPEN_S: not tried again
    monkeypatch.setattr(table, "RETRY_OPEN_S", 0.0)
    writer.write([_doc(2, 2.0)])
    writer.close()
    assert [d["request_id"] for d in table.read(url)] == ["r2"]


def test_a_dropped_table_fails_writes(registry_url: str) -> None:
    writer = PayloadTable(registry_url)
    writer.write([_doc(0, 0.0)])
    with _raw(registry_url) as connection:
        connection.execute(text("DROP TABLE payloads"))
        connection.commit()
    with pytest.raises(RegistryError, match="payloads"):
        writer.write([_doc(1, 1.0)])
    writer.close()


def test_follow_prints_the_last_lines_then_new_entries(registry_url: str) -> None:
    writer = PayloadTable(registry_url)
    writer.write([_doc(i, float(i), "a" if i % 2 else "b") for i in range(6)])
    followed = table.follow(registry_url, "a", lines=2, interval=0.02)
    assert [next(followed)["request_id"] for _ in range(2)] == ["r3", "r5"]
    later = threading.Timer(0.1, writer.write, [[_doc(6, 0.5, "a"), _doc(7, 7.0, "b"), _doc(9, 9.0, "a")]])
    later.start()
    assert [next(followed)["request_id"] for _ in range(2)] == ["r6", "r9"]  # as inserted, whatever the time
    followed.close()
    later.join()
    writer.close()


def _migrate_to(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def test_a_database_at_0002_upgrades_to_0003_and_keeps_its_data(registry_url: str) -> None:
    if registry_url.startswith("sqlite"):
        Path(make_url(registry_url).database or "").parent.mkdir(parents=True)
    _migrate_to(registry_url, "0002")
    with _raw(registry_url) as connection:
        assert not inspect(connection).has_table("payloads")
        at = datetime(2026, 6, 1, tzinfo=UTC)
        audit = {"at": at, "actor": "old", "action": "load", "model": "iris", "version": 1, "reason": "", "details": {}}
        connection.execute(insert(AuditRow).values(**audit))
        connection.execute(insert(RoutingRow).values(model="iris", state={"n": 1}, updated_at=at, updated_by="x"))
        connection.commit()
    writer = PayloadTable(registry_url)  # opening migrates
    writer.write([_doc(0, 1.0)])
    writer.close()
    with _raw(registry_url) as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with RegistryStore(registry_url) as store:
        [entry] = store.history()
        assert (entry.actor, entry.action, entry.model) == ("old", AuditAction.LOAD, "iris")
        routing = store.routing("iris")
        assert routing is not None and routing.state == {"n": 1}
    assert [d["request_id"] for d in table.read(registry_url)] == ["r0"]
