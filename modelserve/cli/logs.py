"""``modelserve logs tail|query``: read the payload log (what models were asked and answered).

Reads the JSON Lines files the server writes (``REPOSITORY/.modelserve/payloads/`` unless the
server was given ``--payload-log-dir``), or with ``--registry`` / ``--url URL`` the payloads table
of a registry database (a server started with ``--payload-log-sink registry``), and prints
matching entries, one JSON object per line, oldest first: the same lines from either sink.

``--dir``, ``--registry`` and ``--url`` may be given before the subcommand or after it; after it,
they win.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from modelserve.bootstrap import payload_directory
from modelserve.cli.options import repository_option
from modelserve.errors import ModelServeError
from modelserve.repository.registry import default_url
from modelserve.repository.registry import payloads as table
from modelserve.telemetry.payloads import read

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class _Source:
    """Where to read: files in ``directory`` (None: the repository's), or a registry database."""

    repository: Path
    directory: Path | None = None
    registry: bool = False
    url: str | None = None

    def over(self, directory: Path | None, registry: bool, url: str | None) -> _Source:
        """This source with a subcommand's own ``--dir``, ``--registry`` and ``--url`` applied."""
        if directory is None and not registry and url is None:
            return self
        return _Source(self.repository, directory, registry, url)

    def database(self) -> str | None:
        """The registry database URL to read, None for files. Raises UsageError for both."""
        if not (self.registry or self.url):
            return None
        if self.directory is not None:
            raise click.UsageError("--dir reads files; --registry and --url read a database: give one")
        url = self.url or default_url(self.repository)
        try:
            parsed = make_url(url)
        except ArgumentError:  # not a URL: reading says what is expected
            return url
        if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
            raise click.ClickException(
                f"no payload log in {url}: the database does not exist (was the server started with "
                "--payload-log-sink registry, and has a model with payload_log on served?)"
            )
        return url


def _source_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option(
        "--url",
        default=None,
        help="Read the payload log from this registry database (sqlite:///..., postgresql+psycopg://...).",
    )(function)
    function = click.option(
        "--registry",
        is_flag=True,
        default=False,
        help="Read the payload log from the repository's registry database (--payload-log-sink registry).",
    )(function)
    return click.option(
        "--dir",
        "directory",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="The payload log directory.",
    )(function)


def _directory(repository: Path, directory: Path | None) -> Path:
    found = payload_directory(repository, directory)
    if not found.is_dir():
        raise click.ClickException(f"no payload log at {found} (is payload_log on for a model, and has it served?)")
    return found


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(f"expected a duration such as 30s, 10m, 2h or 1d, got {text!r}", param_hint="--since")
    return time.time() - float(match[1]) * _SECONDS[match[2]]


def _echo(entry: dict[str, object]) -> None:
    click.echo(orjson.dumps(entry).decode())


@contextmanager
def _reported() -> Iterator[None]:
    """A database error (ModelServeError) becomes ``error: ...`` and exit status 1."""
    try:
        yield
    except ModelServeError as exc:
        raise click.ClickException(exc.message) from None


@click.group()
@repository_option("The served repository, whose payload log to read.")
@_source_options
@click.pass_context
def logs(ctx: click.Context, repository: Path, directory: Path | None, registry: bool, url: str | None) -> None:
    """The payload log: requests and responses of models with payload_log on."""
    ctx.obj = _Source(repository).over(directory, registry, url)


@logs.command()
@click.option("--model", default=None, help="Only this model's entries.")
@click.option("--since", default=None, help="Only entries newer than this (30s, 10m, 2h, 1d).")
@_source_options
@click.pass_obj
def query(
    obj: _Source, model: str | None, since: str | None, directory: Path | None, registry: bool, url: str | None
) -> None:
    """Print matching entries, oldest first."""
    source = obj.over(directory, registry, url)
    database = source.database()
    after = _since(since)
    if database is None:
        entries = read(_directory(source.repository, source.directory), model, after)
    else:
        with _reported():
            entries = table.read(database, model, after)
    for entry in entries:
        _echo(entry)


@logs.command()
@click.option("--model", default=None, help="Only this model's entries.")
@click.option("--lines", "-n", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries as they are written.")
@_source_options
@click.pass_obj
def tail(
    obj: _Source, model: str | None, lines: int, follow: bool, directory: Path | None, registry: bool, url: str | None
) -> None:
    """Print the last entries (and, with --follow, new ones as they come)."""
    source = obj.over(directory, registry, url)
    database = source.database()
    if database is None:
        _tail_files(_directory(source.repository, source.directory), model, lines, follow)
        return
    with _reported():
        for entry in table.follow(database, model, lines) if follow else table.read(database, model, limit=lines):
            _echo(entry)


def _tail_files(directory: Path, model: str | None, lines: int, follow: bool) -> None:
    entries = read(directory, model)
    for entry in entries[-lines:]:
        _echo(entry)
    last = entries[-1]["time"] if entries else 0.0
    while follow:
        time.sleep(1.0)
        fresh = [e for e in read(directory, model, since=float(last)) if float(e["time"]) > float(last)]
        for entry in fresh:
            _echo(entry)
        if fresh:
            last = fresh[-1]["time"]
