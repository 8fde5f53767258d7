"""SHA-256 checksums of a version directory, and their verification before a load.

A version is every regular file under its directory except hidden ones (``.partial`` uploads,
editor droppings), keyed by its path relative to the directory in POSIX form. Verification
reports files changed, missing and added: an added file is a mismatch too, because a file the
registry never saw (a ``model.py`` beside the artifact, say) may change what loads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from modelserve.errors import ConfigError

_CHUNK = 1 << 20


def digest_file(path: Path) -> str:
    """Hex SHA-256 of one file, read in 1 MiB chunks. Raises OSError."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def digest_tree(root: Path) -> dict[str, str]:
    """{relative posix path: hex sha256} for every non-hidden regular file under ``root``, sorted.

    Symbolic links are refused (ConfigError naming the link): a checksum must describe bytes that
    live inside the version, not whatever a link points at when it is read."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_symlink():
            raise ConfigError(f"{path} is a symbolic link; a registered version holds only regular files")
        if path.is_file():
            found[relative.as_posix()] = digest_file(path)
    return found


def mismatch(root: Path, expected: Mapping[str, str]) -> str | None:
    """None when ``root`` holds exactly the files ``expected`` lists with those checksums, else a
    message naming up to three differing files (changed, missing, unexpected). Blocks: reads every byte."""
    try:
        actual = digest_tree(root)
    except (OSError, ConfigError) as exc:
        return f"checksum mismatch: cannot read {root}: {exc}"
    problems = [f"{name} changed" for name in sorted(expected) if name in actual and actual[name] != expected[name]]
    problems += [f"{name} is missing" for name in sorted(expected) if name not in actual]
    problems += [f"{name} was not registered" for name in sorted(actual) if name not in expected]
    if not problems:
        return None
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return "checksum mismatch: " + ", ".join(problems[:3]) + more
