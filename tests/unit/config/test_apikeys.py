"""Token format and hashing of API keys."""

from __future__ import annotations

import pytest

from modelserve.config import apikeys


def test_token_round_trip() -> None:
    key_id, token = apikeys.new_token()
    assert apikeys.split(token) == (key_id, token.removeprefix(f"ms_{key_id}_"))
    same_id, salt, hashed = apikeys.hash_token(token)
    assert same_id == key_id and token not in hashed
    assert apikeys.matches(token.removeprefix(f"ms_{key_id}_"), salt, hashed)
    assert not apikeys.matches("wrong-secret-wrong-secret", salt, hashed)


def test_salts_differ() -> None:
    _, token = apikeys.new_token()
    assert apikeys.hash_token(token)[2] != apikeys.hash_token(token)[2]


@pytest.mark.parametrize("bad", ["", "ms_", "Bearer x", "ms_zzzzzzzzzzzz_abcdefghijklmnopq", "ms_0123456789ab_short"])
def test_malformed_tokens(bad: str) -> None:
    assert apikeys.split(bad) is None
    with pytest.raises(ValueError, match="malformed"):
        apikeys.hash_token(bad)
