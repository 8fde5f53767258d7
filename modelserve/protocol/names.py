"""Model names and versions as clients send them, checked the same way on every transport."""

from __future__ import annotations

import re

from modelserve.errors import InvalidInput

# The same rules the repository uses for directory names (repository/layout.py). A name that
# passes cannot leave the repository: no "/", no "\", no "..", no NUL, no leading dot.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_VERSION = re.compile(r"[1-9][0-9]{0,17}")  # ASCII digits only: str.isdigit() accepts "²"


def parse_version(raw: str | None) -> int | None:
    """A version as a positive int; None for None or "" (the default version). Raises InvalidInput."""
    if not raw:
        return None
    if not _VERSION.fullmatch(raw):
        raise InvalidInput(f"model version must be a positive integer, got {raw!r}")
    return int(raw)


def check_model_name(name: str) -> str:
    """``name`` if it can name a model directory, else InvalidInput (path escapes included)."""
    if not MODEL_NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"invalid model name {name!r}: use 1-128 letters, digits, '_', '.', '-', starting with a "
            "letter or digit (no '/', '..' or NUL)"
        )
    return name
