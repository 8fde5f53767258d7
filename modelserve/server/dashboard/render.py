"""Jinja2 templates (``templates/``) with autoescaping on: every name, reason, label and metadata
value from a model or the registry is escaped, whatever the template does with it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent / "templates"
DASH = "–"


def number(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f}%"


def pretty(value: Any) -> str:
    """JSON for a <pre> (escaped by the template like any text)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def when(value: datetime | None) -> str:
    return DASH if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


class Renderer:
    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,  # every template, whatever its name
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(number=number, percent=percent, pretty=pretty, when=when)

    def __call__(self, template: str, **context: Any) -> str:
        return self._env.get_template(template).render(**context)
