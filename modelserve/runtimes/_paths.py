"""Paths named inside a model file, confined to the directory the model was loaded from.

A model file is untrusted input: an ONNX tensor's external data, a SavedModel's asset, name a file
by a string that the file itself holds. Handed to a library as is, an absolute path or ``..``
reads any file the server can read (and an ONNX model serves its bytes back as weights).
:func:`confined` is the one rule every runtime applies before a library opens such a path.
"""

from __future__ import annotations

import re
from pathlib import Path

from modelserve.errors import LoadError

# "C:", "C:\" or "C:/" (a Windows drive: an absolute path there, a strange name here)
_DRIVE = re.compile(r"^[A-Za-z]:")


def confined(base: Path, relative: str, *, what: str) -> Path:
    """``base / relative`` resolved, once it is known to lie inside ``base``.

    ``relative`` must be a non-empty relative path without a ``..`` part (either slash counts as
    a separator), a drive or a NUL byte, and must not resolve, through symlinks, outside ``base``.
    The path need not exist: callers that need a file check that themselves. ``what`` names the
    model file and the field, for the message. Raises LoadError naming ``what``, the value and
    what was expected.
    """
    expected = f"expected a relative path inside its directory ({base.name or base}/) without '..'"
    if not relative or "\x00" in relative:
        raise LoadError(f"{what}: location {relative!r} is empty or holds a NUL byte; {expected}")
    parts = re.split(r"[/\\]", relative)
    if relative.startswith(("/", "\\")) or _DRIVE.match(relative):
        raise LoadError(f"{what}: location {relative!r} is absolute; {expected}")
    if ".." in parts:
        raise LoadError(f"{what}: location {relative!r} climbs out with '..'; {expected}")
    root = base.resolve()
    try:
        resolved = (root / relative).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise LoadError(f"{what}: location {relative!r} cannot be resolved ({exc}); {expected}") from None
    if not resolved.is_relative_to(root):
        raise LoadError(
            f"{what}: location {relative!r} resolves to {resolved}, outside {root} (through a symlink); {expected}"
        )
    return resolved
