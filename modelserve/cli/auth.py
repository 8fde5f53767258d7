"""``modelserve auth``: create, revoke and list API keys (issue #12).

Keys live in the registry database of ``--repository`` (``REPOSITORY/.modelserve/registry.db``)
unless ``--url`` names another; a server started with ``--auth on`` reads them from the same
database. The token is printed once, by ``create-key``: only its salted hash is stored.

``--keys-file FILE`` works on a YAML keys file instead (``config/keysfile.py``), for a server
started with ``--auth-keys-file FILE`` and no registry database. The file has no audit log: keep
it in version control or wherever changes to it are reviewed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import click

from modelserve.cli.options import default_actor, registry_options
from modelserve.cli.registry import Context, open_store
from modelserve.config import apikeys
from modelserve.config.keysfile import FileKey, KeysFile
from modelserve.errors import ModelServeError
from modelserve.repository.registry import KeyRecord, default_url


@click.group()
@registry_options("The model repository whose registry holds the keys.")
@click.pass_context
def auth(ctx: click.Context, repository: Path, url: str | None, actor: str | None) -> None:
    """API keys for a server started with --auth on: roles infer and admin."""
    ctx.obj = Context(repository, url or default_url(repository), actor or default_actor())


_KEYS_FILE = click.option(
    "--keys-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Keep the key in this YAML keys file (serve --auth-keys-file) instead of the registry database.",
)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ModelServeError as exc:
        raise click.ClickException(exc.message) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@auth.command("create-key")
@click.option("--name", required=True, help="Who or what uses the key; the audit log's actor of its actions.")
@click.option("--role", type=click.Choice(apikeys.ROLES), required=True, help="infer: inference and reads; admin: all.")
@click.option(
    "--rate-limit",
    type=float,
    default=None,
    help="Requests per second this key may make on average (over it: 429 with Retry-After). [default: no limit]",
)
@click.option("--burst", type=int, default=None, help="Requests it may make at once. [default: 2 x --rate-limit]")
@_KEYS_FILE
@click.pass_obj
def create_key(
    ctx: Context, name: str, role: str, rate_limit: float | None, burst: int | None, keys_file: Path | None
) -> None:
    """Create a key and print its token (shown this once only)."""
    if keys_file is not None:
        with _errors():
            key_id, token = KeysFile(keys_file).add(name, role, rate_limit, burst)
        where = f" in {keys_file}"
    else:
        with open_store(ctx) as store:
            key_id, token = store.create_key(name, role, actor=ctx.actor, rate_limit=rate_limit, burst=burst)
        where = ""
    limit = "" if rate_limit is None else f", {rate_limit:g} requests/s"
    click.echo(f"created key {key_id} ({name!r}, role {role}{limit}){where}; the token is shown only now:", err=True)
    click.echo(token)


@auth.command()
@click.argument("key_id")
@click.option("--reason", default="", help="Why, for the audit log.")
@_KEYS_FILE
@click.pass_obj
def revoke(ctx: Context, key_id: str, reason: str, keys_file: Path | None) -> None:
    """Revoke key KEY_ID; servers refuse it within a few seconds."""
    record: KeyRecord | FileKey
    if keys_file is not None:
        with _errors():
            record = KeysFile(keys_file).revoke(key_id)
    else:
        with open_store(ctx) as store:
            record = store.revoke_key(key_id, actor=ctx.actor, reason=reason)
    click.echo(f"revoked key {record.key_id} ({record.name!r}, role {record.role})")


@auth.command("list")
@_KEYS_FILE
@click.pass_obj
def list_keys(ctx: Context, keys_file: Path | None) -> None:
    """Every key: id, name, role, rate limit, created, revoked."""
    keys: list[KeyRecord] | list[FileKey]
    if keys_file is not None:
        with _errors():
            keys = KeysFile(keys_file).keys()
    else:
        with open_store(ctx) as store:
            keys = store.keys()
    click.echo(f"{'KEY ID':<14}{'NAME':<24}{'ROLE':<8}{'LIMIT/S':<10}{'CREATED':<21}REVOKED")
    for key in keys:
        limit = "-" if key.rate_limit is None else f"{key.rate_limit:g}"
        click.echo(
            f"{key.key_id:<14}{key.name:<24}{key.role:<8}{limit:<10}{_when(key.created_at):<21}{_when(key.revoked_at)}"
        )


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"
