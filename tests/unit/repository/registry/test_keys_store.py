"""API keys in the registry: only hashes stored, revocation, audit (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from modelserve.config import apikeys
from modelserve.errors import InvalidInput
from modelserve.repository.registry import AuditAction, RegistryConflict, RegistryStore


def test_create_key_stores_only_a_hash(store: RegistryStore) -> None:
    key_id, token = store.create_key("ci", "infer", actor="alice")
    assert token.startswith(f"ms_{key_id}_")
    record = store.key(key_id)
    assert record is not None and record.name == "ci" and record.role == "infer" and record.revoked_at is None
    assert token not in (record.hash, record.salt) and apikeys.split(token) is not None
    secret = apikeys.split(token)[1]  # type: ignore[index]
    assert apikeys.matches(secret, record.salt, record.hash)
    assert not apikeys.matches(secret + "x", record.salt, record.hash)
    entry = store.history()[-1]
    assert entry.action is AuditAction.KEY_CREATED and entry.actor == "alice"
    assert entry.details == {"key_id": key_id, "name": "ci", "role": "infer"}


def test_revoke_key(store: RegistryStore) -> None:
    first, _ = store.create_key("a", "admin", actor="alice")
    second, _ = store.create_key("b", "infer", actor="alice")
    revoked = store.revoke_key(first, actor="bob", reason="left")
    assert revoked.revoked_at is not None
    listed = store.keys()
    assert [(k.key_id, k.revoked_at is None) for k in listed] == [(first, False), (second, True)]
    entry = store.history()[-1]
    assert entry.action is AuditAction.KEY_REVOKED and entry.actor == "bob" and entry.reason == "left"
    with pytest.raises(RegistryConflict, match=first):
        store.revoke_key(first, actor="bob")
    with pytest.raises(InvalidInput, match="does not exist"):
        store.revoke_key("000000000000", actor="bob")


def test_create_key_refuses_a_bad_role(store: RegistryStore) -> None:
    with pytest.raises(InvalidInput, match="'root'"):
        store.create_key("x", "root", actor="alice")
    assert store.keys() == []
