"""Argument checks of the registry store, run before any database work.

Each returns the value as it will be stored (JSON objects as a fresh, JSON-normalized copy, so that
the record a write returns equals what a later read returns) or raises InvalidInput naming the
argument, the value and what was expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modelserve.errors import InvalidInput
from modelserve.repository.layout import MODEL_NAME
from modelserve.repository.registry.records import AuditAction, Stage

MAX_VERSION = 2**63 - 1  # BIGINT
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_STAGES = {s.value: s for s in Stage}
_ACTIONS = {a.value: a for a in AuditAction}


def model_name(name: object) -> str:
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise InvalidInput(f"model name {name!r}: expected 1-128 characters matching {MODEL_NAME.pattern}")
    return name


def version_number(version: object, name: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise InvalidInput(f"version {version!r} of model {name!r}: expected an integer from 1 to {MAX_VERSION}")
    return version


def stage(value: object) -> Stage:
    found = _STAGES.get(value) if isinstance(value, str) else None
    if found is None:
        raise InvalidInput(f"stage {value!r}: expected one of {', '.join(_STAGES)}")
    return found


def action(value: object) -> AuditAction:
    found = _ACTIONS.get(value) if isinstance(value, str) else None
    if found is None:
        raise InvalidInput(f"audit action {value!r}: expected one of {', '.join(_ACTIONS)}")
    return found


def text(argument: str, value: object, *, required: bool) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        expected = "a non-empty string" if required else "a string"
        raise InvalidInput(f"{argument} {value!r}: expected {expected}")
    return value


def aware(argument: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{argument} {value!r}: expected a timezone-aware datetime")
    return value


def json_object(argument: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{argument}: got {type(value).__name__}, expected a JSON object (a dict)")
    try:
        normalized = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{argument}: not JSON-serializable ({exc})") from None
    if not isinstance(normalized, dict) or len(normalized) != len(value):  # non-str keys that collide
        raise InvalidInput(f"{argument}: keys must be distinct strings")
    return normalized


def string_map(argument: str, value: object) -> dict[str, str]:
    mapping = json_object(argument, value)
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise InvalidInput(f"{argument}[{key!r}] = {item!r}: expected a string")
    return mapping


def checksums(value: object) -> dict[str, str]:
    """{relative POSIX path: SHA-256 hex}; hex digits are lowered."""
    mapping = string_map("checksums", value)
    for path, digest in mapping.items():
        parts = path.split("/")
        if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
            raise InvalidInput(f"checksums: path {path!r}: expected a relative POSIX path without '.' or '..'")
        if not SHA256_HEX.fullmatch(digest.lower()):
            raise InvalidInput(f"checksums[{path!r}] = {digest!r}: expected 64 hexadecimal digits (SHA-256)")
        mapping[path] = digest.lower()
    return mapping
