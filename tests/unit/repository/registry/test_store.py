"""RegistryStore as a user sees it, on SQLite and on PostgreSQL (the ``registry_url`` fixture)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from modelserve.errors import ConfigError, InvalidInput, ModelNotFound, VersionNotFound
from modelserve.repository.registry import (
    AuditAction,
    RegisteredVersion,
    RegistryConflict,
    RegistryError,
    RegistryStore,
    Stage,
)
from modelserve.repository.registry._database import MIGRATIONS
from modelserve.repository.registry.schema import Base

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # the newest migration

DIGEST = "ab" * 32


def _register(store: RegistryStore, name: str = "iris", version: int | None = None, **fields: Any) -> RegisteredVersion:
    arguments: dict[str, Any] = {
        "format": "onnx",
        "signature": {},
        "checksums": {"model.onnx": DIGEST},
        "metadata": {},
        "lineage": {},
        "libraries": {},
        "config": None,
        "actor": "alice",
    }
    return store.register(name, version, **(arguments | fields))


@contextmanager
def _raw(url: str) -> Iterator[Connection]:
    """A plain SQLAlchemy connection to the registry's database, outside the store."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _reject_audit_rows(url: str, condition: str) -> None:
    """Install a trigger that makes the database refuse audit rows matching ``condition``."""
    with _raw(url) as connection:
        if _is_sqlite(url):
            connection.exec_driver_sql(
                f"CREATE TRIGGER reject_audit BEFORE INSERT ON audit WHEN {condition}"
                " BEGIN SELECT RAISE(ABORT, 'rejected by test'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION reject_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" IF {condition} THEN RAISE EXCEPTION 'rejected by test'; END IF; RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER reject_audit BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION reject_audit()"
            )
        connection.commit()


def test_register_and_get_round_trip(store: RegistryStore) -> None:
    fields: dict[str, Any] = {
        "format": "sklearn",
        "signature": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "outputs": []},
        "checksums": {"model.skops": DIGEST, "sub/dir/weights.bin": "CD" * 32},
        "metadata": {"owner": "team-a", "ünïcode": "✓", "nested": {"list": [1, 2.5, None, True]}},
        "lineage": {"training_data": "s3://bucket/iris.csv", "code_revision": "abc123", "metrics": {"acc": 0.97}},
        "libraries": {"scikit-learn": "1.5.2", "numpy": "2.1.0"},
        "config": "runtime: sklearn\nthreads: 2\n",
    }
    before = datetime.now(UTC)
    registered = _register(store, "iris", 3, reason="first cut", **fields)
    got = store.get("iris", 3)
    assert got == registered
    assert (got.model, got.version, got.stage, got.registered_by) == ("iris", 3, Stage.NONE, "alice")
    assert got.signature == fields["signature"] and got.metadata == fields["metadata"]
    assert got.lineage == fields["lineage"] and got.libraries == fields["libraries"]
    assert got.checksums == {"model.skops": DIGEST, "sub/dir/weights.bin": "cd" * 32}  # hex lowered
    assert got.config == fields["config"]
    assert got.registered_at.tzinfo is UTC and before <= got.registered_at <= datetime.now(UTC)
    assert got.stage_changed_at == got.registered_at and got.replaced_by is None and got.sunset_at is None
    [entry] = store.history("iris")
    assert (entry.action, entry.version, entry.from_stage, entry.to_stage) == ("register", 3, None, "none")
    assert (entry.actor, entry.reason) == ("alice", "first cut")


def test_version_numbers_follow_the_highest(store: RegistryStore) -> None:
    assert store.next_version("iris") == 1
    assert _register(store).version == 1
    assert _register(store, version=5).version == 5
    assert store.next_version("iris") == 6
    assert _register(store).version == 6
    assert _register(store, "other").version == 1
    assert [v.version for v in store.versions("iris")] == [1, 5, 6]


def test_registering_an_existing_version_conflicts_and_changes_nothing(store: RegistryStore) -> None:
    _register(store, version=2)
    with pytest.raises(RegistryConflict, match=r"model 'iris' version 2 is already registered.*next one, 3"):
        _register(store, version=2, format="other")
    assert store.get("iris", 2).format == "onnx"
    assert len(store.history()) == 1


def test_invalid_arguments_are_refused_before_the_database(store: RegistryStore) -> None:
    with pytest.raises(InvalidInput, match=r"model name '../x'"):
        _register(store, "../x")
    with pytest.raises(InvalidInput, match=r"version 0 of model 'iris'"):
        _register(store, version=0)
    with pytest.raises(InvalidInput, match=r"checksums\['model.onnx'\] = 'nope'.*SHA-256"):
        _register(store, checksums={"model.onnx": "nope"})
    with pytest.raises(InvalidInput, match=r"checksums: path '../model.onnx'"):
        _register(store, checksums={"../model.onnx": DIGEST})
    with pytest.raises(InvalidInput, match=r"metadata: not JSON-serializable"):
        _register(store, metadata={"when": datetime.now(UTC)})
    with pytest.raises(InvalidInput, match=r"stage 'prod': expected one of none, staging, production, archived"):
        store.set_stage("iris", 1, "prod", actor="alice")
    assert store.models() == [] and store.history() == []


def test_missing_models_and_versions(store: RegistryStore) -> None:
    with pytest.raises(ModelNotFound, match="model 'nope' is not registered"):
        store.get("nope", 1)
    with pytest.raises(ModelNotFound, match="model 'nope'"):
        store.versions("nope")
    _register(store)
    with pytest.raises(VersionNotFound, match="model 'iris' has no registered version 7"):
        store.set_stage("iris", 7, Stage.STAGING, actor="alice")
    assert store.history("nope") == []


def test_stage_transitions(store: RegistryStore) -> None:
    _register(store)
    staged = store.set_stage("iris", 1, Stage.STAGING, actor="bob", reason="try it")
    assert staged.stage == Stage.STAGING and staged.stage_changed_at >= staged.registered_at
    with pytest.raises(RegistryConflict, match="model 'iris' version 1 is already in staging"):
        store.set_stage("iris", 1, "staging", actor="bob")
    with pytest.raises(RegistryConflict, match="cannot move back to stage 'none'"):
        store.set_stage("iris", 1, "none", actor="bob")
    assert store.set_stage("iris", 1, "archived", actor="bob").stage == Stage.ARCHIVED
    with pytest.raises(RegistryConflict, match="model 'iris' version 1 is archived: it may go back to production"):
        store.set_stage("iris", 1, "staging", actor="bob")
    assert store.set_stage("iris", 1, "production", actor="bob").stage == Stage.PRODUCTION
    actions = [(e.action, e.from_stage, e.to_stage, e.actor) for e in store.history("iris")[1:]]
    assert actions == [
        ("promote", "none", "staging", "bob"),
        ("archive", "staging", "archived", "bob"),
        ("promote", "archived", "production", "bob"),
    ]


def test_one_production_version_per_model(store: RegistryStore) -> None:
    for _ in range(3):
        _register(store)
    _register(store, "other")
    store.set_stage("other", 1, "production", actor="alice")
    store.set_stage("iris", 1, "production", actor="alice")
    store.set_stage("iris", 2, "staging", actor="alice")
    promoted = store.set_stage("iris", 2, "production", actor="carol", reason="better recall")
    assert promoted.stage == Stage.PRODUCTION and promoted.replaced_by is None
    old = store.get("iris", 1)
    assert (old.stage, old.replaced_by) == (Stage.ARCHIVED, 2)
    assert store.in_stage("production") == {"iris": [2], "other": [1]}
    assert store.in_stage(Stage.ARCHIVED) == {"iris": [1]}
    archive, promote = store.history("iris", limit=2)
    assert (archive.action, archive.version, archive.actor) == (AuditAction.ARCHIVE, 1, "carol")
    assert archive.reason == "replaced by version 2, promoted to production: better recall"
    assert (promote.action, promote.version, promote.from_stage) == ("promote", 2, "staging")
    assert archive.at == promote.at and archive.id < promote.id


def test_the_database_itself_refuses_a_second_production_version(store: RegistryStore, registry_url: str) -> None:
    _register(store)
    _register(store)
    store.set_stage("iris", 1, "production", actor="alice")
    with _raw(registry_url) as connection, pytest.raises(DBAPIError):
        connection.execute(text("UPDATE versions SET stage = 'production' WHERE version = 2"))


def test_rollback_restores_the_previous_production_version(store: RegistryStore) -> None:
    for _ in range(3):
        _register(store)
    for version in (1, 2, 3):
        store.set_stage("iris", version, "production", actor="alice")
    restored = store.rollback("iris", actor="dave", reason="v3 regressed")
    assert (restored.version, restored.stage, restored.replaced_by) == (2, Stage.PRODUCTION, None)
    assert (store.get("iris", 3).stage, store.get("iris", 3).replaced_by) == (Stage.ARCHIVED, 2)
    archive, rollback = store.history("iris", limit=2)
    assert (archive.action, archive.version, archive.reason) == ("archive", 3, "rolled back to version 2: v3 regressed")
    assert (rollback.action, rollback.version, rollback.from_stage, rollback.to_stage) == (
        "rollback",
        2,
        "archived",
        "production",
    )
    assert (rollback.actor, rollback.reason, rollback.details) == ("dave", "v3 regressed", {"replaced": 3})
    # a second rollback undoes the first; to_version reaches further back
    assert store.rollback("iris", actor="dave").version == 3
    assert store.rollback("iris", actor="dave", to_version=1).version == 1
    assert store.in_stage("production") == {"iris": [1]} and store.get("iris", 3).replaced_by == 1


def test_rollback_with_nothing_to_roll_back_to_conflicts(store: RegistryStore) -> None:
    _register(store)
    _register(store)
    store.set_stage("iris", 1, "production", actor="alice")
    with pytest.raises(RegistryConflict, match=r"model 'iris': nothing to roll back to: .* before version 1"):
        store.rollback("iris", actor="dave")
    with pytest.raises(RegistryConflict, match=r"model 'iris' version 2 is in none: rollback restores an archived"):
        store.rollback("iris", actor="dave", to_version=2)
    with pytest.raises(ModelNotFound):
        store.rollback("nope", actor="dave")
    assert store.in_stage("production") == {"iris": [1]} and len(store.history()) == 3


def test_models_summary(store: RegistryStore) -> None:
    for _ in range(4):
        _register(store)
    _register(store, "alpha")
    store.set_stage("iris", 2, "production", actor="alice")
    store.set_stage("iris", 3, "staging", actor="alice")
    store.set_stage("iris", 4, "staging", actor="alice")
    alpha, iris = store.models()
    assert (alpha.name, alpha.version_count, alpha.latest_version, alpha.production, alpha.staging) == (
        "alpha",
        1,
        1,
        None,
        (),
    )
    assert (iris.name, iris.version_count, iris.latest_version, iris.production, iris.staging) == (
        "iris",
        4,
        4,
        2,
        (3, 4),
    )
    assert iris.created_at == store.get("iris", 1).registered_at
    assert store.in_stage("none") == {"alpha": [1], "iris": [1]}


def test_history_is_chronological_and_complete(store: RegistryStore) -> None:
    _register(store, reason="r1")
    _register(store, "other")
    store.set_stage("iris", 1, "production", actor="bob", reason="go")
    store.record("load", "iris", 1, actor="server", details={"seconds": 0.25})
    store.record(AuditAction.LOAD_FAILED, "unregistered", None, actor="server", reason="no artifact")
    sunset = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    retiring = store.schedule_retirement("iris", 1, sunset, actor="bob", reason="superseded soon")
    assert retiring.sunset_at == datetime(2030, 1, 1, 10, tzinfo=UTC) and retiring.sunset_at.tzinfo is UTC
    everything = store.history()
    assert [(e.action, e.model, e.version) for e in everything] == [
        ("register", "iris", 1),
        ("register", "other", 1),
        ("promote", "iris", 1),
        ("load", "iris", 1),
        ("load_failed", "unregistered", None),
        ("deprecate", "iris", 1),
    ]
    assert [e.id for e in everything] == sorted(e.id for e in everything)
    assert all(a.at <= b.at for a, b in itertools.pairwise(everything))
    assert all(e.at.tzinfo is UTC for e in everything)
    load, failed, deprecate = everything[3:]
    assert (load.details, load.from_stage, load.to_stage) == ({"seconds": 0.25}, None, None)
    assert (failed.reason, failed.details) == ("no artifact", {})
    assert deprecate.details == {"sunset_at": "2030-01-01T10:00:00+00:00"} and deprecate.reason == "superseded soon"
    assert [e.action for e in store.history("iris")] == ["register", "promote", "load", "deprecate"]
    assert store.history(limit=2) == everything[-2:]
    assert store.history("other", limit=5) == [everything[1]]


def test_record_takes_only_server_events(store: RegistryStore) -> None:
    with pytest.raises(
        InvalidInput,
        match=r"audit action 'promote': record\(\) takes canary_rollback, canary_step, load, load_failed, unload",
    ):
        store.record("promote", "iris", 1, actor="server")
    with pytest.raises(InvalidInput, match=r"audit action 'loaded': expected one of register, promote"):
        store.record("loaded", "iris", 1, actor="server")
    with pytest.raises(InvalidInput, match=r"sunset_at .*: expected a timezone-aware datetime"):
        store.schedule_retirement("iris", 1, datetime(2030, 1, 1), actor="bob")
    assert store.history() == []


def test_audit_log_is_append_only_in_the_database(store: RegistryStore, registry_url: str) -> None:
    _register(store)
    statements = ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"]
    if not _is_sqlite(registry_url):
        statements.append("TRUNCATE audit")
    for statement in statements:
        with _raw(registry_url) as connection, pytest.raises(DBAPIError, match="audit log is append-only"):
            connection.execute(text(statement))
    [entry] = store.history()
    assert entry.actor == "alice"


def test_reopening_migrates_once_and_keeps_the_data(registry_url: str) -> None:
    with RegistryStore(registry_url) as first:
        _register(first)
    with RegistryStore(registry_url) as second, RegistryStore(registry_url) as third:
        assert [v.version for v in second.versions("iris")] == [1]
        assert len(third.history()) == 1
    with _raw(registry_url) as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]


def test_orm_classes_match_the_migrations(store: RegistryStore, registry_url: str) -> None:
    with _raw(registry_url) as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_a_schema_from_a_newer_modelserve_is_refused(registry_url: str) -> None:
    RegistryStore(registry_url).close()
    with _raw(registry_url) as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        connection.commit()
    with pytest.raises(RegistryError, match=r"migrate registry .*9999.*newer modelserve"):
        RegistryStore(registry_url)


@contextmanager
def _write_lock(url: str) -> Iterator[None]:
    """Hold the registry's write lock from another connection, as a stuck writer would."""
    if _is_sqlite(url):
        connection = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            connection.rollback()
            connection.close()
    else:
        with _raw(url) as raw:
            raw.execute(text("LOCK TABLE models IN ACCESS EXCLUSIVE MODE"))
            yield
            raw.rollback()


def test_a_locked_database_fails_the_write_and_changes_nothing(registry_url: str) -> None:
    with RegistryStore(registry_url, busy_timeout_ms=100) as store:
        _register(store)
        before = (store.versions("iris"), store.history())
        with _write_lock(registry_url), pytest.raises(RegistryError) as caught:
            _register(store)
        expected = "database is locked" if _is_sqlite(registry_url) else "lock timeout"
        assert caught.value.message.startswith("register model 'iris' version (next): database error: ")
        assert expected in caught.value.message and "Traceback" not in caught.value.message
        assert (store.versions("iris"), store.history()) == before
        assert _register(store).version == 2  # the lock is gone: writes work again


def test_a_failure_midway_rolls_back_the_whole_write(store: RegistryStore, registry_url: str) -> None:
    _register(store)
    _register(store)
    store.set_stage("iris", 1, "production", actor="alice")
    _reject_audit_rows(registry_url, "NEW.model = 'poison' OR NEW.action = 'promote'")
    before = (store.models(), store.versions("iris"), store.history())
    # the version row is inserted, then its audit row is refused: the version must go too
    with pytest.raises(RegistryError, match=r"register model 'poison' version 1: database error: .*rejected by test"):
        _register(store, "poison", 1)
    # version 1 is archived first, then the promotion's audit row is refused: version 1 stays
    with pytest.raises(RegistryError, match="rejected by test"):
        store.set_stage("iris", 2, "production", actor="alice")
    assert (store.models(), store.versions("iris"), store.history()) == before
    with pytest.raises(ModelNotFound):
        store.get("poison", 1)


def test_concurrent_registrations_get_distinct_numbers(registry_url: str) -> None:
    with RegistryStore(registry_url) as one, RegistryStore(registry_url) as two:

        def register_many(store: RegistryStore) -> list[int]:
            return [_register(store).version for _ in range(20)]

        with ThreadPoolExecutor(2) as pool:
            numbers = [n for batch in pool.map(register_many, [one, two]) for n in batch]
        assert sorted(numbers) == list(range(1, 41))
        assert len(one.history("iris")) == 40


def test_concurrent_first_opens_migrate_once(registry_url: str) -> None:
    def open_and_count(_: int) -> int:
        with RegistryStore(registry_url) as store:
            return len(store.models())

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_and_count, range(4))) == [0, 0, 0, 0]


def test_closed_store_refuses_calls(registry_url: str) -> None:
    store = RegistryStore(registry_url)
    store.close()
    with pytest.raises(RegistryError, match=r"read models: the registry store .* is closed"):
        store.models()


def test_urls_the_registry_cannot_use() -> None:
    with pytest.raises(ConfigError, match=r"unsupported database 'mysql'.*expected sqlite:///"):
        RegistryStore("mysql://root:secret@localhost/db")
    with pytest.raises(ConfigError, match="in-memory SQLite"):
        RegistryStore("sqlite://")
    with pytest.raises(ConfigError, match="not a URL"):
        RegistryStore("registry.db")
    with pytest.raises(ConfigError) as caught:
        RegistryStore("oracle://scott:tiger@localhost/db")
    assert "tiger" not in caught.value.message and "***" in caught.value.message
