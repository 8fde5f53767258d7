"""API keys from a YAML keys file and per-key rate limits, against a real server (issue #12):
a server with ``--auth on`` and a keys file needs no registry database; keys added to or revoked
in the file apply within the refresh interval; a key over its rate limit gets 429 with
Retry-After over REST and RESOURCE_EXHAUSTED over gRPC, from the file or the registry."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as tg
from click.testing import CliRunner
from tritonclient.utils import InferenceServerException

from modelserve import testing
from modelserve.cli.main import main
from modelserve.config import apikeys
from modelserve.config.keysfile import KeysFile
from modelserve.repository.registry import REGISTRY_DIR, RegistryStore, default_url
from tests.fixtures.dashboard import ADDER_BODY, directory_repo

INFER = "/v2/models/adder/infer"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``check`` until true: keys are reread every 2 s in the background."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the refresh interval"
        time.sleep(0.1)


def test_cli_keeps_keys_in_the_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    base = ["auth", "-r", str(tmp_path / "models")]
    made = CliRunner().invoke(
        main, [*base, "create-key", "--name", "ci", "--role", "infer", "--rate-limit", "50", "--keys-file", str(keys)]
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    parts = apikeys.split(token)
    assert parts is not None and "50 requests/s" in made.stderr and str(keys) in made.stderr
    assert token not in keys.read_text() and parts[0] in keys.read_text()
    listed = CliRunner().invoke(main, [*base, "list", "--keys-file", str(keys)])
    assert listed.exit_code == 0 and parts[0] in listed.stdout and " 50 " in listed.stdout
    revoked = CliRunner().invoke(main, [*base, "revoke", parts[0], "--keys-file", str(keys)])
    assert revoked.exit_code == 0, revoked.output
    again = CliRunner().invoke(main, [*base, "revoke", parts[0], "--keys-file", str(keys)])
    assert again.exit_code != 0 and "was revoked" in again.output
    bad = CliRunner().invoke(
        main, [*base, "create-key", "--name", "x", "--role", "infer", "--burst", "3", "--keys-file", str(keys)]
    )
    assert bad.exit_code != 0 and "needs a rate_limit" in bad.output
    assert not (tmp_path / "models" / REGISTRY_DIR).exists()  # the file only: no database


def test_serve_refuses_an_invalid_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("- {id: 0123456789ab, name: ops, role: root, salt: " + "ab" * 16 + ", hash: " + "cd" * 32 + "}\n")
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--auth", "on", "--auth-keys-file", str(keys)])
    assert result.exit_code != 0
    assert f"keys file {keys}: entry 1 ('ops'): role must be one of infer, admin" in result.output


def test_a_server_with_a_keys_file_needs_no_database(tmp_path: Path) -> None:
    repo = directory_repo(tmp_path)
    keys = KeysFile(tmp_path / "keys.yaml")
    first_id, first = keys.add("first", "infer")
    with testing.run(repo, auth=True, auth_keys_file=str(keys.path)) as srv, httpx.Client(base_url=srv.http_url) as c:
        assert c.post(INFER, json=ADDER_BODY).status_code == 401
        assert c.post(INFER, json=ADDER_BODY, headers=_bearer(first)).status_code == 200
        assert c.post("/v2/repository/models/adder/load", headers=_bearer(first)).status_code == 403
        _, second = keys.add("second", "admin")  # the file is reread when it changes
        _eventually(lambda: c.post(INFER, json=ADDER_BODY, headers=_bearer(second)).status_code == 200)
        keys.revoke(first_id)
        _eventually(lambda: c.post(INFER, json=ADDER_BODY, headers=_bearer(first)).status_code == 401)
        keys.path.write_text("- not: valid\n")  # a broken edit: the keys read before stay in force
        time.sleep(2.5)
        assert c.post(INFER, json=ADDER_BODY, headers=_bearer(second)).status_code == 200
    assert not (repo / REGISTRY_DIR / "registry.db").exists()


def test_over_the_rate_limit_rest_429_and_grpc_resource_exhausted(tmp_path: Path) -> None:
    repo = directory_repo(tmp_path)
    keys = KeysFile(tmp_path / "keys.yaml")
    key_id, token = keys.add("limited", "infer", rate_limit=0.2, burst=2)
    _, free = keys.add("unlimited", "infer")
    with testing.run(repo, auth=True, auth_keys_file=str(keys.path)) as srv, httpx.Client(base_url=srv.http_url) as c:
        assert [c.post(INFER, json=ADDER_BODY, headers=_bearer(token)).status_code for _ in range(2)] == [200, 200]
        refused = c.post(INFER, json=ADDER_BODY, headers=_bearer(token))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 5  # a token every 5 s
        error = refused.json()["error"]
        assert f"API key {key_id} ('limited')" in error and "0.2 requests/s (burst 2)" in error
        assert all(c.post(INFER, json=ADDER_BODY, headers=_bearer(free)).status_code == 200 for _ in range(50))
        client = tg.InferenceServerClient(srv.grpc_target)
        with pytest.raises(InferenceServerException) as exhausted:
            client.is_model_ready("adder", headers=_bearer(token))
        client.close()
        assert exhausted.value.status() == "StatusCode.RESOURCE_EXHAUSTED" and key_id in str(exhausted.value)


def test_a_registry_key_with_a_rate_limit(tmp_path: Path) -> None:
    """``auth create-key --rate-limit`` in the registry (migration 0006), and the figure: over
    3 s of back-to-back requests, a 20/s key with burst 5 is admitted about 5 + 20 x 3 = 65 times."""
    repo = directory_repo(tmp_path)
    made = CliRunner().invoke(
        main,
        [
            "auth",
            "-r",
            str(repo),
            "create-key",
            "--name",
            "batch",
            "--role",
            "infer",
            "--rate-limit",
            "20",
            "--burst",
            "5",
        ],
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    with RegistryStore(default_url(repo)) as store:
        (record,) = store.keys()
        assert (record.rate_limit, record.burst) == (20.0, 5)
        assert store.history()[-1].details["rate_limit"] == 20.0
    with testing.run(repo, auth=True) as srv, httpx.Client(base_url=srv.http_url) as c:
        statuses: list[int] = []
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < 3.0:
            statuses.append(c.post(INFER, json=ADDER_BODY, headers=_bearer(token)).status_code)
        admitted, expected = statuses.count(200), 5 + 20 * elapsed
        print(
            f"rate limit 20/s burst 5 over {elapsed:.2f} s: {len(statuses)} sent, "
            f"{admitted} admitted, {expected:.1f} expected"
        )
        assert set(statuses) == {200, 429} and len(statuses) > 2 * expected
        assert abs(admitted - expected) <= 3 + 0.05 * expected, (admitted, expected)  # timer slack on a busy machine
