"""The on-disk layout ``REPO_DIR/<model>/<version>/<artifact>`` with optional ``<model>/config.yaml``.

Model names are ``[A-Za-z0-9][A-Za-z0-9_.-]*`` so that they are safe in URLs and file paths;
versions are positive integers. Anything else is skipped with a warning naming it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from modelserve.errors import ConfigError

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
VERSION_NAME = re.compile(r"[1-9][0-9]{0,17}")  # ASCII digits: str.isdigit() accepts "²"
CONFIG_FILE = "config.yaml"
GRAPH_FILE = "graph.yaml"  # <model>/graph.yaml: an inference graph, served as version 1 of that name
WARMUP_DIR = "warmup"  # <version>/warmup/*.json: v2 inference requests the version must answer before READY
MAX_WARMUP_FILES = 1000


@dataclass(frozen=True, slots=True)
class ModelSource:
    """One model directory: its versions (ascending) and its config file (which may not exist)."""

    name: str
    path: Path
    versions: dict[int, Path]
    graph: bool = False  # a graph directory: its one version (1) is the directory itself

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE


def scan(repository: Path) -> list[ModelSource]:
    """Every model directory under ``repository``, sorted by name. Raises ConfigError if not a directory."""
    if not repository.is_dir():
        raise ConfigError(f"model repository {str(repository)!r} is not a directory")
    sources = []
    for path in sorted(repository.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        if not MODEL_NAME.fullmatch(path.name):
            log.warning("skipping %s: model names must match %s", path, MODEL_NAME.pattern)
            continue
        sources.append(_source(path.name, path))
    return sources


def _source(name: str, path: Path) -> ModelSource:
    if (path / GRAPH_FILE).is_file():
        return ModelSource(name=name, path=path, versions={1: path}, graph=True)
    return ModelSource(name=name, path=path, versions=_versions(path))


def _versions(model_dir: Path) -> dict[int, Path]:
    versions = {}
    for path in model_dir.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        if VERSION_NAME.fullmatch(path.name):
            versions[int(path.name)] = path
        else:
            log.warning("skipping %s: version directories are positive integers without leading zeros", path)
    return dict(sorted(versions.items()))


def scan_one(repository: Path, name: str) -> ModelSource | None:
    """The model directory ``repository/name``, None if there is none. ``name`` must be checked first."""
    if not MODEL_NAME.fullmatch(name):
        return None
    path = repository / name
    if not path.is_dir():
        return None
    return _source(name, path)


def warmup_files(version_dir: Path) -> list[Path]:
    """The warmup request files of a version, in name order (``1.json`` before ``2.json`` only if
    named so: use zero-padded names for a numeric order). Raises ConfigError when there are more
    than MAX_WARMUP_FILES."""
    folder = version_dir / WARMUP_DIR
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix == ".json" and p.is_file() and not p.name.startswith("."))
    if len(files) > MAX_WARMUP_FILES:
        raise ConfigError(f"{folder} has {len(files)} warmup files; at most {MAX_WARMUP_FILES} are run")
    return files


Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """(relative path, size, mtime in ns) of every file under ``path``, sorted; () if it is gone.

    Cheap enough to poll (a stat per file, nothing read): a change of any file, a file added or
    removed, changes it. Hidden entries (``.partial`` uploads and the like) are left out.
    """
    entries = []
    try:
        for file in path.rglob("*"):
            relative = file.relative_to(path)
            if any(part.startswith(".") for part in relative.parts):
                continue
            try:
                stat = file.stat()
            except FileNotFoundError:  # removed while we walked: the next poll sees the new state
                continue
            if file.is_file():
                entries.append((relative.as_posix(), stat.st_size, stat.st_mtime_ns))
    except FileNotFoundError:
        return ()
    return tuple(sorted(entries))
