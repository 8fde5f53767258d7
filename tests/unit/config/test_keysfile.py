"""The YAML keys file: what is accepted, what is refused (each message names the file and the
entry), rereading only on change, and the writers the CLI uses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from modelserve.config import apikeys
from modelserve.config.keysfile import KeysFile, load
from modelserve.errors import ConfigError

SALT = "ab" * 16
HASH = "cd" * 32


def _entry(**over: object) -> dict[str, object]:
    return {"id": "0123456789ab", "name": "ci", "role": "infer", "salt": SALT, "hash": HASH, **over}


def _write(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_hand_written_file_loads(tmp_path: Path) -> None:
    path = _write(tmp_path / "keys.yaml", [_entry(rate_limit=50), _entry(id="ba9876543210", name="ops", role="admin")])
    first, second = load(path)
    assert (first.key_id, first.name, first.role, first.rate_limit, first.burst) == (
        "0123456789ab",
        "ci",
        "infer",
        50.0,
        None,
    )
    assert second.role == "admin" and second.rate_limit is None and second.revoked_at is None
    assert load(_write(tmp_path / "empty.yaml", None)) == []


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"keys": []}, ["expected a list"]),
        ([_entry(role="root")], ["entry 1 ('ci')", "role must be one of infer, admin", "'root'"]),
        ([_entry(id="XYZ")], ["entry 1", "id must be 12 lower-case hex digits"]),
        ([{"name": "ci", "role": "infer"}], ["entry 1 ('ci')", "missing id, salt, hash"]),
        ([_entry(salt="zz")], ["salt must be"]),
        ([_entry(hash="00")], ["hash must be 64"]),
        ([_entry(rate_limit=0)], ["rate_limit must be > 0"]),
        ([_entry(rate_limit="fast")], ["rate_limit must be a number"]),
        ([_entry(burst=10)], ["burst 10 needs a rate_limit"]),
        ([_entry(rate_limit=5, burst=0)], ["burst must be an integer >= 1"]),
        ([_entry(**{"rate-limit": 5})], ["unknown field(s) rate-limit"]),
        ([_entry(revoked_at="yesterday")], ["revoked_at must be an ISO 8601 time"]),
        ([_entry(), _entry(name="again")], ["entry 2 ('again')", "id 0123456789ab is also entry 1"]),
        (["just a string"], ["entry 1", "expected a mapping"]),
    ],
)
def test_errors_name_the_file_and_the_entry(tmp_path: Path, document: object, words: list[str]) -> None:
    path = _write(tmp_path / "keys.yaml", document)
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert str(path) in raised.value.message
    for word in words:
        assert word in raised.value.message


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist .*create-key --keys-file"):
        KeysFile(tmp_path / "nope.yaml").keys()
    (tmp_path / "bad.yaml").write_text("- id: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(tmp_path / "bad.yaml")


def test_add_revoke_and_reread_only_on_change(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "keys.yaml"
    keys_file = KeysFile(path)
    key_id, token = keys_file.add("ci", "infer", rate_limit=2.5, burst=4)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # who may call the server: owner only
    assert token not in path.read_text() and apikeys.split(token) is not None
    (key,) = keys_file.keys()
    secret = token.removeprefix(f"ms_{key_id}_")
    assert key.key_id == key_id and apikeys.matches(secret, key.salt, key.hash)
    assert (key.rate_limit, key.burst) == (2.5, 4) and key.created_at is not None
    assert keys_file.keys() is keys_file.keys()  # unchanged file: not parsed again
    revoked = keys_file.revoke(key_id)
    assert revoked.revoked_at is not None and keys_file.keys()[0].revoked_at is not None
    with pytest.raises(ConfigError, match="was revoked"):
        keys_file.revoke(key_id)
    with pytest.raises(ConfigError, match="not in keys file"):
        keys_file.revoke("ffffffffffff")
    with pytest.raises(ValueError, match="rate_limit"):
        keys_file.add("x", "infer", rate_limit=-1)
    assert len(load(path)) == 1 and not [p for p in path.parent.iterdir() if p.name != "keys.yaml"]
