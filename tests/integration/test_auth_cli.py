"""``modelserve auth`` as a user runs it: create a key, list, revoke."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from modelserve.cli.main import main
from modelserve.config import apikeys
from modelserve.repository.registry import RegistryStore, default_url


def test_create_list_revoke(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    base = ["auth", "-r", str(repo), "--actor", "alice@ci"]
    created = CliRunner().invoke(main, [*base, "create-key", "--name", "ci", "--role", "admin"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    parts = apikeys.split(token)
    assert parts is not None
    key_id = parts[0]
    listed = CliRunner().invoke(main, [*base, "list"])
    assert listed.exit_code == 0 and key_id in listed.stdout and "admin" in listed.stdout
    assert token not in listed.stdout
    revoked = CliRunner().invoke(main, [*base, "revoke", key_id, "--reason", "rotated"])
    assert revoked.exit_code == 0, revoked.output
    again = CliRunner().invoke(main, [*base, "revoke", key_id])
    assert again.exit_code != 0 and "revoked" in again.output
    with RegistryStore(default_url(repo)) as store:
        record = store.key(key_id)
        assert record is not None and record.revoked_at is not None and store.history()[-1].actor == "alice@ci"
    bad = CliRunner().invoke(main, [*base, "create-key", "--name", "x", "--role", "root"])
    assert bad.exit_code != 0
