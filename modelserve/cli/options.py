"""Options that several command groups share."""

from __future__ import annotations

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
