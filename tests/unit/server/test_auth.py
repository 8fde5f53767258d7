"""The Authenticator without sockets: roles, the token cache, refresh and revocation, failures."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

from modelserve.config import apikeys
from modelserve.errors import Forbidden, Unauthenticated
from modelserve.server.auth import ADMIN, INFER, PUBLIC, Authenticator, Identity, token_from


@dataclass(frozen=True)
class Key:
    key_id: str
    name: str
    role: str
    salt: str
    hash: str
    revoked_at: datetime | None = None
    rate_limit: float | None = None
    burst: int | None = None


def _key(name: str, role: str) -> tuple[Key, str]:
    key_id, token = apikeys.new_token()
    _, salt, hashed = apikeys.hash_token(token)
    return Key(key_id, name, role, salt, hashed), token


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_roles() -> None:
    (infer, infer_token), (admin, admin_token) = _key("ci", "infer"), _key("ops", "admin")
    auth = Authenticator(lambda: [infer, admin])
    assert auth.check(None, PUBLIC) is None
    assert auth.check(infer_token, INFER) == Identity(infer.key_id, "ci", "infer")
    with pytest.raises(Forbidden, match="role infer; this needs admin"):
        auth.check(infer_token, ADMIN)
    assert auth.check(admin_token, INFER) == auth.check(admin_token, ADMIN) == Identity(admin.key_id, "ops", "admin")
    for bad in (None, "", "nonsense", infer_token[:-1] + ("A" if infer_token[-1] != "A" else "B")):
        with pytest.raises(Unauthenticated):
            auth.check(bad, INFER)


def test_verified_tokens_are_cached_until_the_next_refresh_and_revocation_applies() -> None:
    key, token = _key("ci", "infer")
    keys = [key]
    reads: list[int] = []
    clock = Clock()

    def read() -> list[Key]:
        reads.append(1)
        return keys

    auth = Authenticator(read, refresh_s=2.0, clock=clock)
    for _ in range(100):
        auth.identify(token)
    assert len(reads) == 1
    keys = [replace(key, revoked_at=datetime.now(UTC))]
    clock.now = 1.0
    assert auth.identify(token).name == "ci"  # within the refresh interval
    clock.now = 2.5
    with pytest.raises(Unauthenticated, match="revoked"):
        auth.identify(token)
    assert len(reads) == 2


def test_a_store_that_cannot_be_read_fails_closed_then_keeps_the_last_keys() -> None:
    key, token = _key("ci", "infer")
    clock = Clock()
    state = {"fail": True}

    def read() -> list[Key]:
        if state["fail"]:
            raise OSError("database is locked")
        return [key]

    auth = Authenticator(read, refresh_s=1.0, clock=clock)
    with pytest.raises(Unauthenticated):
        auth.identify(token)
    state["fail"], clock.now = False, 1.5
    assert auth.identify(token).name == "ci"
    state["fail"], clock.now = True, 3.0
    assert auth.identify(token).name == "ci"


def test_token_from_headers() -> None:
    assert token_from([("authorization", "Bearer abc")]) == "abc"
    assert token_from([("authorization", "bearer  abc ")]) == "abc"
    assert token_from([("x-api-key", "abc")]) == "abc"
    assert token_from([("authorization", "Basic abc")]) is None
    assert token_from([]) is None
