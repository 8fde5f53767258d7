"""``modelserve traffic show|set|clear`` against a real server's admin API, as an operator runs it.

The model's config.yaml has no ``traffic:`` section, so every policy the tests see was set through
the CLI; the server keeps overrides in the repository's registry database, where the audit log is
checked too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from modelserve import testing
from modelserve.cli.main import main
from modelserve.repository.registry import AuditAction, RegistryStore, default_url
from tests.fixtures.models import _save_onnx, adder_model

SPLIT = {
    "policy": "split",
    "variants": [
        {"name": "control", "version": 1, "weight": 90},
        {"name": "treatment", "version": 2, "weight": 10},
    ],
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """``adder`` versions 1 and 2, both served, and no traffic policy in its config.yaml."""
    root = tmp_path / "models"
    for version in (1, 2):
        _save_onnx(root / "adder" / str(version) / "model.onnx", adder_model(float(version)))
    (root / "adder" / "config.yaml").write_text("version_policy: {latest: 2}\n")
    return root


@pytest.fixture
def control(repo: Path) -> Iterator[testing.run]:
    with testing.run(repo, control_api=True) as srv:
        yield srv


def cli(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, ["traffic", *args], env=env)
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def _shown(url: str, model: str = "adder") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cli("show", model, "--url", url, "--json").stdout)
    return doc


def test_set_show_clear_as_an_operator_does(control: testing.run, repo: Path, tmp_path: Path) -> None:
    url = control.http_url
    assert (_shown(url)["source"], _shown(url)["policy"]) == ("none", None)
    policy_file = tmp_path / "policy.yaml"  # a config.yaml snippet: the traffic: key is unwrapped
    policy_file.write_text(yaml.safe_dump({"traffic": SPLIT}, sort_keys=False))
    done = cli("set", "adder", "--file", str(policy_file), "--reason", "try v2", "--actor", "alice@ci", "--url", url)
    assert done.stdout == "adder: traffic policy overridden (split)\n"

    doc = _shown(url)
    assert (doc["model"], doc["source"]) == ("adder", "override")
    assert doc["policy"]["policy"] == "split"
    assert [(v["name"], v["version"], v["weight"]) for v in doc["policy"]["variants"]] == [
        ("control", 1, 90),
        ("treatment", 2, 10),
    ]
    assert isinstance(doc["state"], dict)
    readable = cli("show", "adder", "--url", url).stdout
    assert "model:  adder\n" in readable and "source: override" in readable
    assert "policy:\n  policy: split\n" in readable and "name: treatment" in readable
    assert not readable.lstrip().startswith("{")

    done = cli("clear", "adder", "--reason", "v2 is fine", "--actor", "alice@ci", "--url", url)
    assert done.stdout == "adder: traffic override cleared; policy now none\n"
    assert (_shown(url)["source"], _shown(url)["policy"]) == ("none", None)

    with RegistryStore(default_url(repo)) as store:  # both changes audited, with who and why
        entries = [e for e in store.history("adder") if e.action is AuditAction.TRAFFIC]
        assert [(e.actor, e.reason) for e in entries] == [("alice@ci", "try v2"), ("alice@ci", "v2 is fine")]
        assert entries[0].details["policy"]["policy"] == "split" and entries[1].details == {"policy": None}
        routing = store.routing("adder")
        assert routing is not None and routing.policy is None


def test_json_policy_and_url_from_the_environment(control: testing.run) -> None:
    env = {"MODELSERVE_URL": control.http_url}
    policy = {"policy": "split", "variants": [{"name": "only", "version": 2, "weight": 1}]}
    cli("set", "adder", "--json-policy", json.dumps(policy), env=env)
    doc = json.loads(cli("show", "adder", "--json", env=env).stdout)
    assert doc["source"] == "override"
    assert [(v["name"], v["version"]) for v in doc["policy"]["variants"]] == [("only", 2)]
    cli("clear", "adder", env=env)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"policy": "split", "variants": [{"name": "a", "version": 1, "weight": -1}]}, "weight"),
        ({"policy": "split", "variants": [{"name": "a", "version": 1}], "bogus": 1}, "bogus"),
        ({"policy": "coin_flip", "variants": []}, "coin_flip"),
    ],
)
def test_a_bad_policy_prints_the_servers_error(control: testing.run, policy: dict[str, Any], expected: str) -> None:
    url = control.http_url
    result = cli("set", "adder", "--json-policy", json.dumps(policy), "--url", url, ok=False)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and expected in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert _shown(url)["source"] == "none"  # nothing changed


def test_a_server_without_the_control_api_refuses_changes(repo: Path, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(SPLIT))
    with testing.run(repo) as srv:
        url = srv.http_url
        for args in (["set", "adder", "--file", str(policy_file)], ["clear", "adder"]):
            result = cli(*args, "--url", url, ok=False)
            assert result.exit_code == 1
            assert result.stderr.startswith("error: ") and "--control-api on" in result.stderr
        assert _shown(url)["source"] == "none"  # reading is not an admin operation
    # the server is gone now: nobody listens at its address
    result = cli("show", "adder", "--url", url, ok=False)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot connect to the server at {url}")


def test_an_unknown_model_and_a_bad_policy_file(control: testing.run, tmp_path: Path) -> None:
    result = cli("show", "nope", "--url", control.http_url, ok=False)
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "nope" in result.stderr
    mixed = tmp_path / "config.yaml"  # a whole config.yaml: which part is the policy is not guessed
    mixed.write_text(yaml.safe_dump({"version_policy": {"latest": 2}, "traffic": SPLIT}))
    result = cli("set", "adder", "--file", str(mixed), "--url", control.http_url, ok=False)
    assert result.exit_code == 2 and "give the traffic: section alone" in result.stderr
    result = cli("set", "adder", "--url", control.http_url, ok=False)
    assert result.exit_code == 2 and "exactly one of --file or --json-policy" in result.stderr
