"""RegistryStore's routing rows (traffic policy overrides, router state) and canary audit events,
on SQLite and on PostgreSQL (the ``registry_url`` fixture)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, insert, inspect, make_url, text

from modelserve.errors import InvalidInput
from modelserve.repository.registry import AuditAction, RegistryError, RegistryStore, RoutingRecord
from modelserve.repository.registry._database import MIGRATIONS
from modelserve.repository.registry.schema import AuditRow, Base, RoutingRow

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # the newest migration

SPLIT: dict[str, Any] = {"split": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
BANDIT: dict[str, Any] = {"bandit": {"arms": [1, 2], "epsilon": 0.1, "reward": "ünïcode ✓", "extra": None}}


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


def test_set_traffic_round_trip(store: RegistryStore) -> None:
    before = datetime.now(UTC)
    written = store.set_traffic("iris", SPLIT, actor="alice", reason="try v2")
    assert isinstance(written, RoutingRecord)
    assert (written.model, written.policy, written.state, written.updated_by) == ("iris", SPLIT, {}, "alice")
    assert written.updated_at.tzinfo is UTC and before <= written.updated_at <= datetime.now(UTC)
    assert store.routing("iris") == written  # the model need not be registered
    store.set_traffic("adder", BANDIT, actor="bob")
    assert [r.model for r in store.routings()] == ["adder", "iris"]
    assert store.routings()[0].policy == BANDIT
    assert store.routing("unknown") is None
    assert store.models() == []  # routing rows create no registered model


def test_records_are_fresh_copies(store: RegistryStore) -> None:
    policy = {"split": [{"version": 1, "weight": 100}]}
    written = store.set_traffic("iris", policy, actor="alice")
    policy["split"] = []  # the caller's dict is not the stored one
    assert written.policy is not None
    written.policy["changed"] = True
    written.state["changed"] = True
    read = store.routing("iris")
    assert read is not None and read.policy == {"split": [{"version": 1, "weight": 100}]} and read.state == {}


def test_clearing_the_override_stores_null_and_is_audited(store: RegistryStore, registry_url: str) -> None:
    store.set_traffic("iris", SPLIT, actor="alice")
    cleared = store.set_traffic("iris", None, actor="bob", reason="back to config.yaml")
    assert (cleared.policy, cleared.state, cleared.updated_by) == (None, {}, "bob")
    assert store.routing("iris") == cleared
    with _raw(registry_url) as connection:  # SQL NULL, not the JSON text 'null'
        assert connection.execute(text("SELECT policy IS NULL FROM routing WHERE model = 'iris'")).scalar_one()
    set_row, clear_row = store.history("iris")
    assert (set_row.details, clear_row.details) == ({"policy": SPLIT}, {"policy": None})
    assert (clear_row.action, clear_row.actor, clear_row.reason) == (AuditAction.TRAFFIC, "bob", "back to config.yaml")


def test_set_traffic_resets_state_and_writes_one_audit_row(store: RegistryStore) -> None:
    store.set_traffic("iris", SPLIT, actor="alice")
    store.save_routing_state("iris", {"counts": {"1": 40, "2": 3}})
    replaced = store.set_traffic("iris", BANDIT, actor="carol", reason="learn it")
    assert (replaced.policy, replaced.state) == (BANDIT, {})
    entries = store.history("iris")
    assert [e.action for e in entries] == [AuditAction.TRAFFIC, AuditAction.TRAFFIC]
    last = entries[-1]
    assert (last.actor, last.reason, last.details) == ("carol", "learn it", {"policy": BANDIT})
    assert (last.version, last.from_stage, last.to_stage) == (None, None, None)
    assert last.at == replaced.updated_at


def test_saving_state_keeps_the_policy_and_writes_no_audit_row(store: RegistryStore) -> None:
    written = store.set_traffic("iris", SPLIT, actor="alice")
    store.save_routing_state("iris", {"canary": {"step": 2}})
    store.save_routing_state("iris", {"canary": {"step": 3}, "pulls": [1.5, None, True]})
    read = store.routing("iris")
    assert read is not None
    assert (read.policy, read.state) == (SPLIT, {"canary": {"step": 3}, "pulls": [1.5, None, True]})
    assert (read.updated_at, read.updated_by) == (written.updated_at, "alice")  # the last set_traffic
    assert len(store.history("iris")) == 1


def test_saving_state_of_a_model_without_override(store: RegistryStore) -> None:
    before = datetime.now(UTC)
    store.save_routing_state("bandit-from-config", {"counts": [1, 2]})
    read = store.routing("bandit-from-config")
    assert read is not None
    assert (read.policy, read.state, read.updated_by) == (None, {"counts": [1, 2]}, "")
    assert before <= read.updated_at <= datetime.now(UTC)
    store.save_routing_state("bandit-from-config", {})
    assert store.routing("bandit-from-config") == RoutingRecord("bandit-from-config", None, {}, read.updated_at, "")
    assert store.history() == []


def test_canary_events_are_recorded(store: RegistryStore) -> None:
    store.record(AuditAction.CANARY_STEP, "iris", 2, actor="server", details={"step": 1, "weight": 25})
    store.record("canary_rollback", "iris", 2, actor="server", reason="error rate 7% > 5%", details={"weight": 0})
    step, rollback = store.history("iris")
    assert (step.action, step.version, step.details, step.reason) == ("canary_step", 2, {"step": 1, "weight": 25}, "")
    assert (rollback.action, rollback.reason, rollback.details) == (
        "canary_rollback",
        "error rate 7% > 5%",
        {"weight": 0},
    )
    with pytest.raises(InvalidInput, match=r"record\(\) takes canary_rollback, canary_step, load.*traffic is written"):
        store.record(AuditAction.TRAFFIC, "iris", None, actor="server", details={"policy": None})
    assert len(store.history()) == 2


def test_the_audit_action_column_needs_no_constraint_change(store: RegistryStore, registry_url: str) -> None:
    assert all(len(action.value) <= 32 for action in AuditAction)  # audit.action is String(32)
    with _raw(registry_url) as connection:
        assert inspect(connection).get_check_constraints("audit") == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.set_traffic("../etc", SPLIT, actor="a"), r"model name '\.\./etc': expected 1-128 characters"),
        (lambda s: s.set_traffic("", None, actor="a"), "model name ''"),
        (lambda s: s.set_traffic("m" * 129, None, actor="a"), "model name 'mmm"),
        (lambda s: s.set_traffic(None, None, actor="a"), "model name None"),
        (lambda s: s.save_routing_state("a b", {}), "model name 'a b'"),
        (lambda s: s.routing("a/b"), "model name 'a/b'"),
        (lambda s: s.set_traffic("iris", [SPLIT], actor="a"), "policy: got list, expected a JSON object"),
        (lambda s: s.set_traffic("iris", {"w": float("nan")}, actor="a"), r"policy: not JSON-serializable"),
        (lambda s: s.set_traffic("iris", {"s": {1, 2}}, actor="a"), r"policy: not JSON-serializable"),
        (lambda s: s.set_traffic("iris", SPLIT, actor=" "), "actor ' ': expected a non-empty string"),
        (lambda s: s.set_traffic("iris", SPLIT, actor="a", reason=None), "reason None: expected a string"),
        (lambda s: s.save_routing_state("iris", None), "state: got NoneType, expected a JSON object"),
        (lambda s: s.save_routing_state("iris", {"x": object()}), "state: not JSON-serializable"),
    ],
)
def test_bad_arguments_are_refused_before_the_database(store: RegistryStore, call: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call(store)
    assert (store.routings(), store.history()) == ([], [])


def test_a_refused_audit_row_rolls_back_the_policy(store: RegistryStore, registry_url: str) -> None:
    store.set_traffic("iris", SPLIT, actor="alice")
    store.save_routing_state("iris", {"step": 1})
    before = (store.routing("iris"), store.history())
    with _raw(registry_url) as connection:
        if _is_sqlite(registry_url):
            connection.exec_driver_sql(
                "CREATE TRIGGER reject_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'rejected by test'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION reject_audit() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN RAISE EXCEPTION 'rejected by test'; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER reject_audit BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION reject_audit()"
            )
        connection.commit()
    with pytest.raises(RegistryError, match=r"set the traffic policy of model 'iris': database error: .*rejected"):
        store.set_traffic("iris", BANDIT, actor="mallory")
    with pytest.raises(RegistryError, match=r"clear the traffic policy of model 'new': database error"):
        store.set_traffic("new", None, actor="mallory")
    assert (store.routing("iris"), store.history()) == before
    assert store.routing("new") is None


def test_concurrent_state_saves_never_clobber_a_policy(registry_url: str) -> None:
    """A server saving state while an operator changes the policy, through two stores (two processes)."""
    with RegistryStore(registry_url) as server, RegistryStore(registry_url) as admin:
        done = threading.Event()

        def save_states() -> int:
            count = 0
            while not done.is_set():
                server.save_routing_state("iris", {"pulls": count})
                count += 1
            return count

        with ThreadPoolExecutor(1) as pool:
            saver = pool.submit(save_states)
            try:
                for weight in range(20):
                    admin.set_traffic("iris", {"split": [{"version": 2, "weight": weight}]}, actor="alice")
            finally:
                done.set()
            assert saver.result() > 0
        final = server.routing("iris")
        assert final is not None and final.policy == {"split": [{"version": 2, "weight": 19}]}
        assert [e.details["policy"]["split"][0]["weight"] for e in admin.history("iris")] == list(range(20))


def test_concurrent_first_writes_of_a_model_do_not_conflict(registry_url: str) -> None:
    """Many writers create the same new rows at once: each upsert inserts or updates, never fails."""
    with RegistryStore(registry_url) as one, RegistryStore(registry_url) as two:
        barrier = threading.Barrier(2)

        def write(store: RegistryStore) -> None:
            for number in range(15):
                barrier.wait(timeout=30)
                if store is one:
                    store.set_traffic(f"m{number}", SPLIT, actor="alice")
                else:
                    store.save_routing_state(f"m{number}", {"n": number})

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(write, [one, two]))
        found = {r.model: r for r in one.routings()}
        assert sorted(found) == sorted(f"m{n}" for n in range(15))
        assert all(r.policy == SPLIT and r.state in ({}, {"n": int(r.model[1:])}) for r in found.values())
        assert len(one.history()) == 15


def _migrate_to(url: str, revision: str) -> None:
    """Bring an empty database to ``revision`` as an older modelserve would have left it."""
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


def test_a_database_at_0001_upgrades_to_0002_and_keeps_its_data(registry_url: str) -> None:
    if _is_sqlite(registry_url):  # the store creates the directory; this test opens the file itself
        Path(make_url(registry_url).database or "").parent.mkdir(parents=True)
    _migrate_to(registry_url, "0001")
    with _raw(registry_url) as connection:
        assert not inspect(connection).has_table("routing")
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0001"
        old = {"at": datetime(2025, 6, 1, tzinfo=UTC), "actor": "old", "action": "load", "model": "iris", "version": 1}
        connection.execute(insert(AuditRow).values(**old, reason="", details={}))
        connection.commit()
    with RegistryStore(registry_url) as store:
        [entry] = store.history()
        assert (entry.at, entry.actor, entry.action, entry.version) == (old["at"], "old", AuditAction.LOAD, 1)
        assert store.routings() == []
        store.set_traffic("iris", SPLIT, actor="alice")
        store.save_routing_state("iris", {"step": 1})
        read = store.routing("iris")
        assert read is not None and (read.policy, read.state) == (SPLIT, {"step": 1})
    with _raw(registry_url) as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        # a row written without policy and state (another tool): the migration's defaults apply
        connection.execute(insert(RoutingRow).values(model="x", updated_at=datetime.now(UTC), updated_by=""))
        connection.commit()
    with RegistryStore(registry_url) as store:
        read = store.routing("x")
        assert read is not None and (read.policy, read.state) == (None, {})
