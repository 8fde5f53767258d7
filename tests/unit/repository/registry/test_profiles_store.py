"""Reference profiles in the registry: stored per (model, version), replaced, audited, on SQLite
and on PostgreSQL (the ``registry_url`` fixture)."""

from __future__ import annotations

import pytest

from modelserve.errors import InvalidInput
from modelserve.repository.registry import AuditAction, RegistryStore

PROFILE = {"features": [{"name": "x", "kind": "numeric", "sample": [0.5, 1.5]}], "rows": 2}


def test_a_profile_round_trips_and_replacing_it_is_audited(store: RegistryStore) -> None:
    assert store.profile("iris", 1) is None and store.profiled() == {}
    first = store.set_profile("iris", 1, PROFILE, actor="ann", source="train.parquet")
    assert (first.model, first.version, first.profile, first.source, first.created_by) == (
        "iris", 1, PROFILE, "train.parquet", "ann",
    )  # fmt: skip
    store.set_profile("iris", 2, {"features": []}, actor="bob")
    replaced = store.set_profile("iris", 1, {"features": [], "rows": 0}, actor="bob", source="retrain.csv")
    stored = store.profile("iris", 1)
    assert stored is not None and stored.profile == {"features": [], "rows": 0} and stored.source == "retrain.csv"
    assert set(store.profiled()) == {("iris", 1), ("iris", 2)}
    assert store.profiled()[("iris", 1)] == replaced.created_at
    audit = [(e.action, e.version, e.actor, e.details["source"]) for e in store.history("iris")]
    assert audit == [
        (AuditAction.PROFILE, 1, "ann", "train.parquet"),
        (AuditAction.PROFILE, 2, "bob", ""),
        (AuditAction.PROFILE, 1, "bob", "retrain.csv"),
    ]
    stored.profile["rows"] = 99  # a record is a copy
    assert store.profile("iris", 1).profile["rows"] == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "version", "profile", "message"),
    [
        ("../etc", 1, PROFILE, "model name"),
        ("iris", 0, PROFILE, "version"),
        ("iris", 1, ["not", "an", "object"], "profile"),
    ],
)
def test_bad_arguments_are_refused_before_the_database(
    store: RegistryStore, name: str, version: int, profile: object, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        store.set_profile(name, version, profile, actor="ann")  # type: ignore[arg-type]
    assert store.profiled() == {}
