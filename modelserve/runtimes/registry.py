"""Which runtime serves a version directory: chosen by config, else by the artifact's file name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from modelserve.config.model import ModelConfig
from modelserve.errors import LoadError
from modelserve.runtimes.base import Runtime


@dataclass(frozen=True, slots=True)
class RuntimeEntry:
    name: str
    factory: str  # "module:Class", imported only when a model needs it
    suffixes: tuple[str, ...]  # artifact file suffixes this runtime claims


RUNTIMES: Mapping[str, RuntimeEntry] = {
    e.name: e
    for e in (
        RuntimeEntry("onnx", "modelserve.runtimes.onnx:OnnxRuntime", (".onnx",)),
        RuntimeEntry("sklearn", "modelserve.runtimes.sklearn:SklearnRuntime", (".skops", ".joblib", ".pkl", ".pickle")),
    )
}


def resolve(version_dir: Path, config: ModelConfig) -> tuple[Callable[[], Runtime], Path]:
    """Runtime factory and artifact path for ``version_dir``. Raises LoadError saying what is wrong."""
    if config.runtime is not None and config.runtime not in RUNTIMES:
        raise LoadError(f"config.yaml: runtime {config.runtime!r} is not one of {sorted(RUNTIMES)}")
    artifact = _artifact(version_dir, config)
    entry = RUNTIMES[config.runtime] if config.runtime else _by_suffix(artifact)
    module_name, _, class_name = entry.factory.partition(":")
    factory: Callable[[], Runtime] = getattr(importlib.import_module(module_name), class_name)
    return factory, artifact


def _artifact(version_dir: Path, config: ModelConfig) -> Path:
    if config.artifact is not None:
        path = version_dir / config.artifact
        if path.parent != version_dir or not path.is_file():
            raise LoadError(f"config.yaml: artifact {config.artifact!r} is not a file in {version_dir}")
        return path
    claimed = {s for e in RUNTIMES.values() for s in e.suffixes}
    if config.runtime is not None:
        claimed = set(RUNTIMES[config.runtime].suffixes)
    found = sorted(p for p in version_dir.iterdir() if p.is_file() and p.suffix in claimed)
    if len(found) == 1:
        return found[0]
    if not found:
        raise LoadError(f"{version_dir}: no model artifact found; expected a file ending in one of {sorted(claimed)}")
    names = [p.name for p in found]
    raise LoadError(f"{version_dir}: several artifacts {names}; name one with 'artifact:' in config.yaml")


def _by_suffix(artifact: Path) -> RuntimeEntry:
    return next(e for e in RUNTIMES.values() if artifact.suffix in e.suffixes)
