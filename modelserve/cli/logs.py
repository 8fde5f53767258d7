"""``modelserve logs tail|query``: read the payload log (what models were asked and answered).

Reads the JSON Lines files the server writes (``REPOSITORY/.modelserve/payloads/`` unless the
server was given ``--payload-log-dir``) and prints matching entries, one JSON object per line,
oldest first.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import click
import orjson

from modelserve.bootstrap import payload_directory
from modelserve.cli.options import repository_option
from modelserve.telemetry.payloads import read

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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


@click.group()
@repository_option("The served repository, whose payload log to read.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The payload log directory.",
)
@click.pass_context
def logs(ctx: click.Context, repository: Path, directory: Path | None) -> None:
    """The payload log: requests and responses of models with payload_log on."""
    ctx.obj = (repository, directory)


@logs.command()
@click.option("--model", default=None, help="Only this model's entries.")
@click.option("--since", default=None, help="Only entries newer than this (30s, 10m, 2h, 1d).")
@click.pass_obj
def query(obj: tuple[Path, Path | None], model: str | None, since: str | None) -> None:
    """Print matching entries, oldest first."""
    for entry in read(_directory(*obj), model, _since(since)):
        _echo(entry)


@logs.command()
@click.option("--model", default=None, help="Only this model's entries.")
@click.option("--lines", "-n", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries as they are written.")
@click.pass_obj
def tail(obj: tuple[Path, Path | None], model: str | None, lines: int, follow: bool) -> None:
    """Print the last entries (and, with --follow, new ones as they come)."""
    directory = _directory(*obj)
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
