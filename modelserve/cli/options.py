"""Options that several command groups share."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def repository_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--repository/-r`` (env ``MODELSERVE_REPOSITORY``, default ``models``) with ``help_text``."""
    return click.option(
        "--repository",
        "-r",
        type=click.Path(path_type=Path, file_okay=False),
        default=Path("models"),
        envvar="MODELSERVE_REPOSITORY",
        show_default=True,
        help=help_text,
    )


def default_actor() -> str:
    """Who the audit log records when --actor is not given: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def registry_options(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A registry command group's options: ``--repository`` (``help_text``), ``--url`` (env
    ``MODELSERVE_REGISTRY_URL``) and ``--actor``."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--actor", default=None, help="Who to record in the audit log. [default: user@host]")(
            command
        )
        command = click.option(
            "--url",
            envvar="MODELSERVE_REGISTRY_URL",
            default=None,
            help="The registry database. [default: sqlite:///REPOSITORY/.modelserve/registry.db]",
        )(command)
        return repository_option(help_text)(command)

    return apply
