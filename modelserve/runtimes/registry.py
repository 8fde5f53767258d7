"""Which runtime serves a version directory: chosen by config, else by the artifact's file name."""

from __future__ import annotations

import fnmatch
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
    patterns: tuple[str, ...]  # file names this runtime claims (fnmatch patterns, matched case-sensitively)
    runs_code: bool = False  # loading executes the user's Python code: needs the server's trust_code
    # the artifact stands for the whole directory (a SavedModel, a model.py that reads its own
    # files): when present it is the artifact, whatever other files lie beside it
    owns_directory: bool = False
    gpu: bool = False  # honours config.yaml ``device: cuda``; the others run on CPU only


RUNTIMES: Mapping[str, RuntimeEntry] = {
    e.name: e
    for e in (
        RuntimeEntry("onnx", "modelserve.runtimes.onnx:OnnxRuntime", ("*.onnx",), gpu=True),
        RuntimeEntry(
            "sklearn", "modelserve.runtimes.sklearn:SklearnRuntime", ("*.skops", "*.joblib", "*.pkl", "*.pickle")
        ),
        RuntimeEntry("xgboost", "modelserve.runtimes.xgboost:XGBoostRuntime", ("*.ubj", "model.json"), gpu=True),
        RuntimeEntry("lightgbm", "modelserve.runtimes.lightgbm:LightGBMRuntime", ("model.txt",)),
        RuntimeEntry("pmml", "modelserve.runtimes.pmml:PmmlRuntime", ("*.pmml",)),
        RuntimeEntry("pfa", "modelserve.runtimes.pfa:PfaRuntime", ("*.pfa", "*.pfa.json")),
        RuntimeEntry(
            "tensorflow", "modelserve.runtimes.tensorflow:TensorFlowRuntime", ("saved_model.pb",), owns_directory=True
        ),
        RuntimeEntry("torch", "modelserve.runtimes.torch:TorchScriptRuntime", ("*.pt",), gpu=True),
        RuntimeEntry("precomputed", "modelserve.runtimes.precomputed:PrecomputedRuntime", ("precomputed.yaml",)),
        RuntimeEntry(
            "python", "modelserve.runtimes.python:PythonRuntime", ("model.py",), runs_code=True, owns_directory=True
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Resolved:
    entry: RuntimeEntry
    artifact: Path  # the file to load (for a SavedModel, saved_model.pb inside the version directory)

    def runtime(self) -> Runtime:
        module_name, _, class_name = self.entry.factory.partition(":")
        factory: Callable[[], Runtime] = getattr(importlib.import_module(module_name), class_name)
        return factory()


def resolve(version_dir: Path, config: ModelConfig) -> Resolved:
    """The runtime and artifact for ``version_dir``. Raises LoadError saying what is wrong."""
    if config.runtime is not None and config.runtime not in RUNTIMES:
        raise LoadError(f"config.yaml: runtime {config.runtime!r} is not one of {sorted(RUNTIMES)}")
    artifact = _artifact(version_dir, config)
    if config.runtime is not None:
        return Resolved(RUNTIMES[config.runtime], artifact)
    entry = _by_name(artifact.name)
    if entry is None:
        raise LoadError(
            f"config.yaml: no runtime claims the artifact {artifact.name!r} by its name; "
            f"say which with 'runtime:' (one of {sorted(RUNTIMES)})"
        )
    return Resolved(entry, artifact)


def _artifact(version_dir: Path, config: ModelConfig) -> Path:
    if config.artifact is not None:
        path = version_dir / config.artifact
        if path.parent != version_dir or not path.is_file():
            raise LoadError(f"config.yaml: artifact {config.artifact!r} is not a file in {version_dir}")
        return path
    entries = [RUNTIMES[config.runtime]] if config.runtime is not None else list(RUNTIMES.values())
    patterns = sorted({p for e in entries for p in e.patterns})
    found = sorted(p for p in version_dir.iterdir() if p.is_file() and any(_claims(e, p.name) for e in entries))
    owners = [p for p in found if any(e.owns_directory and _claims(e, p.name) for e in entries)]
    if len(owners) == 1:
        return owners[0]
    if len(found) == 1:
        return found[0]
    if not found:
        raise LoadError(f"{version_dir}: no model artifact found; expected a file named like one of {patterns}")
    names = [p.name for p in found]
    raise LoadError(f"{version_dir}: several artifacts {names}; name one with 'artifact:' in config.yaml")


def _claims(entry: RuntimeEntry, name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in entry.patterns)


def _by_name(name: str) -> RuntimeEntry | None:
    return next((e for e in RUNTIMES.values() if _claims(e, name)), None)
