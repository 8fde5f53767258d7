"""Models given as Python code: a ``model.py`` in the version directory.

Loading runs the file, with the server's rights, so the manager loads it only when the server runs
with ``--trust-code`` (``trust_code``, ``MODELSERVE_TRUST_CODE=on``).

The contract. ``model.py`` defines a class named ``Model`` or, failing that, exactly one class with
a ``predict`` method (classes it imports do not count). The server makes one instance with no
arguments, then:

- ``load(self, path: Path) -> None`` (optional): ``path`` is the version directory, to read the
  files shipped beside ``model.py``. Whatever it raises fails the version with
  ``model.py: load failed: <Type>: <message>``.
- ``predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]``: inputs by name, in the
  declared datatypes; it returns every declared output by name (lists and scalars go through
  ``np.asarray``). What it raises reaches the client as an internal error with a request id.
- ``signature`` (class attribute): ``{"inputs": [{"name", "datatype", "shape"}, ...], "outputs":
  [...]}``, the same form as config.yaml's ``signature:``. config.yaml's signature, if any, applies
  on top of it by position, as for every runtime, and stands alone when the class declares none.
- ``thread_safe = True`` (class attribute, optional): ``predict`` may run in several threads at
  once. Without it, calls to one instance are serialised by a lock, since user code rarely is.

Isolation. Each load imports ``model.py`` under a fresh module name, as a package whose search path
is the version directory: two models, or two versions of one, never share module state, and files
beside ``model.py`` are imported relatively (``from .helpers import f``), without adding anything
to ``sys.path``. Unload removes the module and its submodules from ``sys.modules``.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig, parse_model_config
from modelserve.errors import ConfigError, LoadError, RuntimeFailure
from modelserve.runtimes.base import declared_signature
from modelserve.types import Signature

log = logging.getLogger(__name__)

HOW = """declare one as a class attribute in model.py, e.g.:
class Model:
    signature = {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
    }
or the same under 'signature:' in the model's config.yaml"""

_serial = itertools.count(1)  # next() on a count is atomic under the GIL: unique module names


class PythonRuntime:
    platform = "python"

    def __init__(self) -> None:
        self.model: Any = None
        self._module_name = ""
        self._search_path = ""
        self._lock: AbstractContextManager[Any] = nullcontext()
        self._outputs: tuple[str, ...] = ()

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        module = self._import(artifact)
        try:
            cls = _model_class(module, artifact.name)
            signature = _signature(cls, config, artifact.name)
            instance = _instantiate(cls, artifact)
        except BaseException:
            self._forget_module()
            raise
        self.model = instance
        self._outputs = tuple(t.name for t in signature.outputs)
        self._lock = nullcontext() if getattr(cls, "thread_safe", False) is True else threading.Lock()
        return signature

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        with self._lock:
            result = self.model.predict(dict(inputs))
        if not isinstance(result, Mapping):
            raise RuntimeFailure(f"model.py: predict returned a {type(result).__name__}, expected a dict of arrays")
        wanted = list(outputs) if outputs is not None else self._outputs
        missing = [name for name in wanted if name not in result]
        if missing:
            raise RuntimeFailure(
                f"model.py: predict did not return the declared output(s) {missing}; it returned {sorted(result)}"
            )
        return {name: np.asarray(result[name]) for name in wanted}

    def unload(self) -> None:
        self.model = None
        self._forget_module()

    def _import(self, artifact: Path) -> ModuleType:
        self._module_name = name = f"_modelserve_code_{next(_serial)}"
        self._search_path = str(artifact.parent)
        spec = importlib.util.spec_from_file_location(name, artifact, submodule_search_locations=[self._search_path])
        if spec is None or spec.loader is None:
            raise LoadError(f"{artifact.name}: Python cannot import it from {artifact.parent}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: relative imports look the package up here
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            self._forget_module()
            if not isinstance(exc, Exception):
                raise
            log.error("%s: importing it raised", artifact, exc_info=exc)
            raise LoadError(f"{artifact.name}: import failed: {type(exc).__name__}: {exc}") from None
        return module

    def _forget_module(self) -> None:
        if not self._module_name:
            return
        prefix = self._module_name + "."
        # a snapshot: another thread may be importing (a runtime recycled or loading) meanwhile
        for key in [k for k in list(sys.modules) if k == self._module_name or k.startswith(prefix)]:
            del sys.modules[key]
        sys.path_importer_cache.pop(self._search_path, None)  # the finder for the version directory
        self._module_name = ""


def _model_class(module: ModuleType, file: str) -> type:
    named = getattr(module, "Model", None)
    if isinstance(named, type):
        if not callable(getattr(named, "predict", None)):
            raise LoadError(f"{file}: class Model has no predict(self, inputs) method")
        return named
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == module.__name__ and callable(getattr(value, "predict", None))
    ]
    if len(found) != 1:
        which = f"{len(found)}: {[c.__name__ for c in found]}" if found else "none"
        raise LoadError(
            f"{file}: expected a class named Model, or exactly one class with a predict(self, inputs) method; "
            f"found {which}"
        )
    return found[0]


def _signature(cls: type, config: ModelConfig, file: str) -> Signature:
    """The class's ``signature`` attribute; config.yaml's when the class declares none."""
    declared = getattr(cls, "signature", None)
    what = f"{file}: models given as code"
    if declared is None:
        return declared_signature(config.signature, what, HOW)
    try:
        override = parse_model_config({"signature": declared}, f"{file}: {cls.__name__}.signature")
    except ConfigError as exc:
        raise LoadError(exc.message) from None
    return declared_signature(override.signature, what, HOW)


def _instantiate(cls: type, artifact: Path) -> Any:
    try:
        instance = cls()
        load = getattr(instance, "load", None)
        if load is not None:
            load(artifact.parent)
    except Exception as exc:
        log.error("%s: %s failed to load", artifact, cls.__name__, exc_info=exc)
        raise LoadError(f"{artifact.name}: load failed: {type(exc).__name__}: {exc}") from None
    return instance
