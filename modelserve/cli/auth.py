"""``modelserve auth``: create, revoke and list API keys (issue #12).

Keys live in the registry database of ``--repository`` (``REPOSITORY/.modelserve/registry.db``)
unless ``--url`` names another; a server started with ``--auth on`` reads them from the same
database. The token is printed once, by ``create-key``: only its salted hash is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from modelserve.cli.options import default_actor, registry_options
from modelserve.cli.registry import Context
from modelserve.config import apikeys
from modelserve.errors import ModelServeError
from modelserve.repository.registry import RegistryStore, default_url


@click.group()
@registry_options("The model repository whose registry holds the keys.")
@click.pass_context
def auth(ctx: click.Context, repository: Path, url: str | None, actor: str | None) -> None:
    """API keys for a server started with --auth on: roles infer and admin."""
    ctx.obj = Context(repository, url or default_url(repository), actor or default_actor())


@contextmanager
def _store(ctx: Context) -> Iterator[RegistryStore]:
    try:
        with RegistryStore(ctx.url) as store:
            yield store
    except ModelServeError as exc:
        raise click.ClickException(exc.message) from None


@auth.command("create-key")
@click.option("--name", required=True, help="Who or what uses the key; the audit log's actor of its actions.")
@click.option("--role", type=click.Choice(apikeys.ROLES), required=True, help="infer: inference and reads; admin: all.")
@click.pass_obj
def create_key(ctx: Context, name: str, role: str) -> None:
    """Create a key and print its token (shown this once only)."""
    with _store(ctx) as store:
        key_id, token = store.create_key(name, role, actor=ctx.actor)
    click.echo(f"created key {key_id} ({name!r}, role {role}); the token is shown only now:", err=True)
    click.echo(token)


@auth.command()
@click.argument("key_id")
@click.option("--reason", default="", help="Why, for the audit log.")
@click.pass_obj
def revoke(ctx: Context, key_id: str, reason: str) -> None:
    """Revoke key KEY_ID; servers refuse it within a few seconds."""
    with _store(ctx) as store:
        record = store.revoke_key(key_id, actor=ctx.actor, reason=reason)
    click.echo(f"revoked key {record.key_id} ({record.name!r}, role {record.role})")


@auth.command("list")
@click.pass_obj
def list_keys(ctx: Context) -> None:
    """Every key: id, name, role, created, revoked."""
    with _store(ctx) as store:
        keys = store.keys()
    click.echo(f"{'KEY ID':<14}{'NAME':<24}{'ROLE':<8}{'CREATED':<22}REVOKED")
    for key in keys:
        revoked = "-" if key.revoked_at is None else f"{key.revoked_at:%Y-%m-%d %H:%M:%S}"
        click.echo(f"{key.key_id:<14}{key.name:<24}{key.role:<8}{key.created_at:%Y-%m-%d %H:%M:%S}  {revoked}")
