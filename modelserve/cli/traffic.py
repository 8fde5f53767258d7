"""``modelserve traffic show|set|clear``: a running server's traffic policy overrides, over its admin API.

Each command is one request to ``{--url}/v2/models/{MODEL}/traffic`` (GET, PUT, DELETE; the
default URL is the server's default address, or ``MODELSERVE_URL``). Setting and clearing are
admin operations: the server refuses them unless it runs with ``--control-api on``, and writes
them to the registry's audit log with ``--actor`` (default: user@host, as ``modelserve registry``)
and ``--reason``. A server's error reply, or no reply, is printed as ``error: <message>`` on
stderr with exit status 1.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx
import yaml

from modelserve.cli.options import default_actor
from modelserve.config.server import ServerConfig

_DEFAULTS = {f.name: f.default for f in fields(ServerConfig)}
DEFAULT_URL = f"http://{_DEFAULTS['host']}:{_DEFAULTS['http_port']}"
TIMEOUT_S = 30.0
_SOURCES = {
    "config": "config.yaml (traffic:)",
    "override": "override (admin API); `modelserve traffic clear` goes back to config.yaml",
    "none": "none: requests go to the model's default version",
}


class Failed(click.ClickException):
    """Printed as ``error: <message>`` on stderr; exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _url_option(command: Any) -> Any:
    return click.option(
        "--url",
        envvar="MODELSERVE_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The server's REST address (env MODELSERVE_URL).",
    )(command)


def _audit_options(command: Any) -> Any:
    command = click.option("--reason", default="", help="Why, for the audit log.")(command)
    return click.option("--actor", default=None, help="Who to record in the audit log. [default: user@host]")(command)


@click.group()
def traffic() -> None:
    """Traffic policies (A/B splits, bandits, canaries, shadows) of a running server's models."""


@traffic.command()
@click.argument("model")
@_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON document as it is.")
def show(model: str, url: str, as_json: bool) -> None:
    """The traffic policy routing MODEL, where it comes from, and its live state."""
    doc = _request("GET", url, model)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    _print(doc)


@traffic.command("set")
@click.argument("model")
@click.option(
    "--file",
    "policy_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The policy, YAML or JSON: config.yaml's traffic: section, with or without the 'traffic:' key.",
)
@click.option("--json-policy", default=None, help="The policy as a JSON object (instead of --file).")
@_audit_options
@_url_option
def set_command(
    model: str, policy_file: Path | None, json_policy: str | None, actor: str | None, reason: str, url: str
) -> None:
    """Override the traffic policy of MODEL (its config.yaml's traffic: section) until cleared."""
    policy = _policy(policy_file, json_policy)
    body = {"policy": policy, "reason": reason, "actor": actor or default_actor()}
    doc = _request("PUT", url, model, body)
    click.echo(f"{doc.get('model', model)}: traffic policy overridden ({_kind(doc.get('policy'))})")


@traffic.command()
@click.argument("model")
@_audit_options
@_url_option
def clear(model: str, actor: str | None, reason: str, url: str) -> None:
    """Remove the override of MODEL: its config.yaml's traffic: section (if any) applies again."""
    doc = _request("DELETE", url, model, {"reason": reason, "actor": actor or default_actor()})
    now = "none" if doc.get("source") == "none" else f"{_kind(doc.get('policy'))} from config.yaml"
    click.echo(f"{doc.get('model', model)}: traffic override cleared; policy now {now}")


def _policy(policy_file: Path | None, json_policy: str | None) -> dict[str, Any]:
    """The policy document from --file or --json-policy (exactly one), unwrapped from ``traffic:``."""
    if (policy_file is None) == (json_policy is None):
        raise click.UsageError("give the policy with exactly one of --file or --json-policy")
    if policy_file is not None:
        where, hint = f"{policy_file}: ", "--file"
        try:
            text = policy_file.read_text(encoding="utf-8")
            loaded = json.loads(text) if policy_file.suffix.lower() == ".json" else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            raise click.BadParameter(f"cannot read {policy_file}: {exc}", param_hint=hint) from None
    else:
        where, hint = "", "--json-policy"
        try:
            loaded = json.loads(json_policy or "")
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint=hint) from None
    if not isinstance(loaded, dict):
        raise click.BadParameter(
            f"{where}expected a mapping (the traffic policy), got {_type(loaded)}", param_hint=hint
        )
    if "traffic" in loaded:
        if len(loaded) != 1:
            others = sorted(str(key) for key in loaded if key != "traffic")
            raise click.BadParameter(
                f"{where}'traffic' is beside other keys {others}; give the traffic: section alone",
                param_hint=hint,
            )
        loaded = loaded["traffic"]
        if not isinstance(loaded, dict):
            raise click.BadParameter(f"{where}traffic: expected a mapping, got {_type(loaded)}", param_hint=hint)
    return loaded


def _request(method: str, url: str, model: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The server's JSON answer to one request. Raises Failed for an error reply or none."""
    target = f"{url.rstrip('/')}/v2/models/{quote(model, safe='')}/traffic"
    try:
        with httpx.Client(timeout=TIMEOUT_S) as client:
            response = client.request(method, target, json=body)
    except httpx.ConnectError as exc:
        raise Failed(
            f"cannot connect to the server at {url} ({exc}); is it running, and is --url (or MODELSERVE_URL) right?"
        ) from None
    except httpx.TimeoutException:
        raise Failed(f"the server at {url} did not answer {method} {target} within {TIMEOUT_S:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise Failed(f"{method} {target}: {exc}") from None
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if response.is_error:
        message = doc.get("error") if isinstance(doc, dict) else None
        if not isinstance(message, str):
            message = f"{method} {target}: HTTP {response.status_code}: {response.text.strip()[:200]}"
        raise Failed(message)
    if not isinstance(doc, dict):
        raise Failed(f"{method} {target}: expected a JSON object, got: {response.text.strip()[:200]}")
    return doc


def _print(doc: dict[str, Any]) -> None:
    source = str(doc.get("source"))
    click.echo(f"model:  {doc.get('model')}")
    click.echo(f"source: {_SOURCES.get(source, source)}")
    for key in ("policy", "state"):
        value = doc.get(key)
        if value in (None, {}):
            click.echo(f"{key}: {'none' if value is None else '{}'}")
            continue
        click.echo(f"{key}:")
        dumped = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True)
        click.echo("".join(f"  {line}\n" for line in dumped.splitlines()), nl=False)


def _kind(policy: object) -> str:
    return str(policy.get("policy", "?")) if isinstance(policy, dict) else "none"


def _type(value: object) -> str:
    return "nothing" if value is None else type(value).__name__
