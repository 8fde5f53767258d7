"""PFA documents (JSON) on titus2, the Python PFA engine.

Trust: titus2 compiles a PFA document into Python source and runs it, and its code generator
pastes some of the document's text into that source unescaped (the engine's ``name``, the ``doc``
of a type tested by ``ifnotnull``), so a crafted document runs arbitrary Python when it loads.
PFA files therefore load only with ``trusted: true`` in the model's config.yaml, as pickles do.
Cells and pools whose ``source`` is ``json`` or ``avro`` would make titus open the file or URL
they name: they are refused, so a model reads nothing outside its artifact.

Compatibility: titus2 1.2.0 (the latest release) calls ``inspect.getargspec`` (removed in
Python 3.11) and reads ``numpy.float_`` (removed in numpy 2.0), both only while its modules are
imported. They are provided for the duration of that import and removed afterwards; if the
import still fails, loading fails with a LoadError that names the versions and the error.

Signature, from the document's Avro types. Input: a record gives one tensor per field, named
after it; any other type one tensor named ``input``. Output likewise (``output`` when it is not a
record). Each is ``[-1]``, one value per row: ``double`` FP64 (FP32 accepted), ``float`` FP32,
``int`` INT32 and ``long`` INT64 (narrower integers accepted), ``boolean`` BOOL, ``string``,
``enum`` and ``bytes`` BYTES; an array of numbers is ``[-1, -1]``, one array per row. Other types
(maps, unions, fixed, nested records) refuse to load, naming them. Only the ``map`` method (one
output per input) is served; ``emit`` and ``fold`` engines refuse to load.

Threads: titus is pure Python, so the GIL serialises it whatever the thread count, and
``threads`` in config.yaml has nothing to set. A PFA engine is not thread-safe (its cells are
mutable state), so each model has one engine behind a lock: requests are scored one at a time,
in order, and cell updates stay consistent. Engines per thread would multiply memory and split
cell state for no speed.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig
from modelserve.errors import InvalidInput, LoadError, RuntimeFailure
from modelserve.runtimes.base import missing_extra
from modelserve.types import DATATYPES, Signature, TensorSpec

_INTS = frozenset({"INT8", "INT16", "UINT8", "UINT16"})
# Avro type -> (protocol datatype, datatypes a client may also send)
_TYPES: Mapping[str, tuple[str, frozenset[str]]] = {
    "double": ("FP64", frozenset({"FP32"})),
    "float": ("FP32", frozenset()),
    "int": ("INT32", _INTS),
    "long": ("INT64", _INTS | {"INT32", "UINT32"}),
    "boolean": ("BOOL", frozenset()),
    "string": ("BYTES", frozenset()),
    "enum": ("BYTES", frozenset()),
    "bytes": ("BYTES", frozenset()),
}
_NUMBERS = frozenset({"double", "float", "int", "long"})
_import_lock = threading.Lock()
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Field:
    spec: TensorSpec
    key: str | None  # the record field, or None when the whole input/output is this one value
    avro: str  # "double", "enum", "array"...
    symbols: frozenset[str] = frozenset()  # an enum's


class PfaRuntime:
    platform = "pfa"

    def __init__(self) -> None:
        self.model: Any = None
        self._lock = threading.Lock()
        self._inputs: tuple[_Field, ...] = ()
        self._outputs: tuple[_Field, ...] = ()

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        engine_class = import_titus()
        if not config.trusted:
            raise LoadError(
                f"{artifact.name}: titus2 turns a PFA document into Python code and runs it, and a crafted "
                "document can run any code it likes; PFA files load only when the model's config.yaml says "
                "'trusted: true'"
            )
        text = _checked_document(artifact)
        try:
            engine = engine_class.fromJson(text)[0]
        except Exception as exc:  # titus raises PFA*Exception, json and Avro errors, even SyntaxError
            raise LoadError(f"{artifact.name}: titus cannot load it: {type(exc).__name__}: {exc}") from None
        if engine.config.method != "map":
            raise LoadError(f"{artifact.name}: PFA method {engine.config.method!r} is not served; only 'map' is")
        self._inputs = _fields(engine.inputType, "input", artifact.name)
        self._outputs = _fields(engine.outputType, "output", artifact.name)
        try:
            engine.begin()
        except Exception as exc:
            raise LoadError(f"{artifact.name}: the PFA 'begin' block failed: {type(exc).__name__}: {exc}") from None
        self.model = engine
        return Signature(inputs=tuple(f.spec for f in self._inputs), outputs=tuple(f.spec for f in self._outputs))

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        columns = [_column(f, inputs[f.spec.name]) for f in self._inputs]
        if len({len(c) for c in columns}) > 1:
            sizes = {f.spec.name: len(c) for f, c in zip(self._inputs, columns, strict=True)}
            raise InvalidInput(f"the inputs of a PFA model must all have the same number of rows, got {sizes}")
        keys = [f.key for f in self._inputs]
        datums = (
            columns[0] if keys == [None] else [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]
        )
        with self._lock:
            action = self.model.action
            results = [action(datum) for datum in datums]
        return {f.spec.name: _result(f, [r if f.key is None else r[f.key] for r in results]) for f in self._outputs}

    def unload(self) -> None:
        with self._lock:
            engine, self.model = self.model, None
        if engine is None:
            return
        try:
            engine.end()
        except Exception:  # the model goes either way; a failing 'end' block has nobody to tell but the log
            log.exception("the PFA 'end' block failed")


def import_titus() -> Any:
    """titus's ``PFAEngine`` class, imported with the shims titus2 1.2.0 needs. Raises LoadError."""
    try:
        import titus  # noqa: F401  (only to tell "not installed" from "does not import")
    except ImportError:
        raise missing_extra("titus2", "pfa") from None
    with _import_lock:
        if "titus.genpy" not in sys.modules:
            _import_with_shims()
    return sys.modules["titus.genpy"].PFAEngine


def _import_with_shims() -> None:
    added: list[tuple[Any, str]] = []
    if not hasattr(inspect, "getargspec"):
        inspect.getargspec = inspect.getfullargspec  # type: ignore[attr-defined]  # titus reads only .args
        added.append((inspect, "getargspec"))
    if "float_" not in np.__dict__:
        np.float_ = np.float64  # type: ignore[attr-defined]
        added.append((np, "float_"))
    try:
        import titus.genpy  # noqa: F401
    except Exception as exc:
        raise LoadError(
            f"titus2 cannot be imported on Python {sys.version.split()[0]} with numpy {np.__version__}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    finally:
        for module, name in added:
            delattr(module, name)


def _checked_document(artifact: Path) -> str:
    """The document's text, once it is known to be a JSON object whose cells and pools are embedded."""
    try:
        text = artifact.read_bytes().decode("utf-8")
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LoadError(f"{artifact.name}: not a PFA document (JSON in UTF-8): {exc}") from None
    if not isinstance(document, dict):
        raise LoadError(f"{artifact.name}: a PFA document is a JSON object, got {type(document).__name__}")
    for section in ("cells", "pools"):
        entries = document.get(section) or {}
        for name, entry in entries.items() if isinstance(entries, dict) else ():
            source = entry.get("source", "embedded") if isinstance(entry, dict) else "embedded"
            if source != "embedded":
                raise LoadError(
                    f"{artifact.name}: {section[:-1]} {name!r} has source {source!r}, which would make titus read "
                    "a file or URL; embed its value in the document instead"
                )
    return text


def _fields(avro_type: Any, role: str, where: str) -> tuple[_Field, ...]:
    if _avro(avro_type) != "record":
        return (_field(role, None, avro_type, role, where),)
    return tuple(_field(f.name, f.name, f.avroType, f"{role} field {f.name!r}", where) for f in avro_type.fields)


def _field(name: str, key: str | None, avro_type: Any, what: str, where: str) -> _Field:
    avro = _avro(avro_type)
    if avro == "array" and _avro(avro_type.items) in _NUMBERS:
        datatype, accepts = _TYPES[_avro(avro_type.items)]
        return _Field(TensorSpec(name, datatype, (-1, -1), accepts), key, avro)
    if avro not in _TYPES:
        raise LoadError(
            f"{where}: {what} has Avro type {avro_type!r}; modelserve serves {sorted(_TYPES)}, arrays of numbers, "
            "and records of those"
        )
    datatype, accepts = _TYPES[avro]
    symbols = frozenset(avro_type.symbols) if avro == "enum" else frozenset()
    return _Field(TensorSpec(name, datatype, (-1,), accepts), key, avro, symbols)


def _avro(avro_type: Any) -> str:
    return type(avro_type).__name__.removeprefix("Avro").lower()  # titus's AvroDouble -> "double"


def _column(field: _Field, array: np.ndarray) -> list[Any]:
    values: list[Any] = array.tolist()
    if field.avro in ("string", "enum"):
        try:
            values = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"input {field.spec.name!r}: PFA strings are UTF-8 text ({exc.reason})") from None
        unknown = set(values) - field.symbols if field.avro == "enum" else set()
        if unknown:
            raise InvalidInput(f"input {field.spec.name!r}: {sorted(unknown)} not among {sorted(field.symbols)}")
    elif field.avro == "bytes":
        values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    return values


def _result(field: _Field, values: list[Any]) -> np.ndarray:
    dtype = DATATYPES[field.spec.datatype]
    if dtype.kind == "O":
        out = np.empty(len(values), dtype=object)
        out[:] = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
        return out
    if field.avro == "array" and not values:
        return np.zeros((0, 0), dtype=dtype)
    try:
        return np.array(values, dtype=dtype).reshape((len(values), -1) if field.avro == "array" else (len(values),))
    except ValueError as exc:  # arrays of different lengths cannot make one tensor
        raise RuntimeFailure(
            f"PFA output {field.spec.name!r} cannot be made a {field.spec.datatype} tensor: {exc}"
        ) from None
