"""Model names and versions as clients send them, checked the same way on every transport."""

from __future__ import annotations

import re

from modelserve.errors import InvalidInput
from modelserve.types import VERSION_LABEL

# The same rules the repository uses for directory names (repository/layout.py). A name that
# passes cannot leave the repository: no "/", no "\", no "..", no NUL, no leading dot.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_VERSION = re.compile(r"[1-9][0-9]{0,17}")  # ASCII digits only: str.isdigit() accepts "²"
LABEL_HEADER = "model-version-label"  # v2 REST header and gRPC metadata key
LABEL_PARAMETER = "version_label"  # v2 inference request parameter


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


def parse_label(raw: str | None) -> str | None:
    """A version label; None for None or "" (no label). Raises InvalidInput."""
    if not raw:
        return None
    if not VERSION_LABEL.fullmatch(raw):
        raise InvalidInput(f"version label must be 1-64 letters, digits, '_', '.', '-' and not a number, got {raw!r}")
    return raw


def pick_label(version: int | None, *sources: tuple[str, object]) -> str | None:
    """The one version label the request names, from ``(where, value)`` sources (header, request
    parameter...). Raises InvalidInput when they disagree, when a value is not a string, or when
    the request also names a version (a label stands for a version: both is ambiguous)."""
    found: dict[str, str] = {}
    for where, value in sources:
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"{where} must be a string, got {value!r}")
        found[where] = value
    if len(set(found.values())) > 1:
        shown = ", ".join(f"{where} {value!r}" for where, value in found.items())
        raise InvalidInput(f"the request names different version labels: {shown}")
    label = parse_label(next(iter(found.values()), None))
    if label is not None and version is not None:
        raise InvalidInput(f"the request names version {version} and version label {label!r}; name one of them")
    return label
