"""What a graph's nodes compute, and what they produce (datatype and shape), known at load time.

Transformers and combiners are :class:`Step` objects: plain synchronous numpy code, cheap enough to
run on the event loop (a standardisation or a mean of a few hundred rows takes microseconds; the
models, which do the heavy work, run in the inference pool). Model and router nodes are
:class:`ModelCall` objects, which ask the manager for a model version per request.

Each constructor checks its inputs' specs and raises LoadError (prefixed with ``where``, which
names the graph.yaml and the node); each call raises InvalidInput for data the step cannot take,
or RuntimeFailure for a broken promise of trusted code. The graph adds its name and the node's.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from modelserve.core.manager import ModelManager
from modelserve.errors import InvalidInput, LoadError, RuntimeFailure
from modelserve.routing.graph_spec import Cast, Code, Combine, Op, Rename, Route, Select, Standardize
from modelserve.types import DATATYPES, InferRequest, RequestedOutput, Tensor, TensorSpec, datatype_of

_serial = itertools.count(1)
NUMERIC = frozenset(DATATYPES) - {"BYTES"}


class Step(Protocol):
    """A transformer or combiner: named input arrays in, named output arrays out."""

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """What it produces, before the node's ``outputs`` renames."""
        ...

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def make_step(op: Op, inputs: Mapping[str, TensorSpec], where: str, code: object = None) -> Step:
    """The step for ``op``. ``inputs``: node input name -> the spec its source gives, named after
    the source (``node.output`` or a graph input). ``code``: the instance a Code op loaded."""
    if isinstance(op, Standardize):
        return _Standardize(op, inputs, where)
    if isinstance(op, Select):
        return _Select(op, inputs, where)
    if isinstance(op, Cast):
        return _Cast(op, inputs, where)
    if isinstance(op, Rename):
        return _Rename(inputs)
    if isinstance(op, Combine):
        return _Vote(inputs, where) if op.how == "majority_vote" else _Mean(op, inputs, where)
    if op.combiner:
        return _CodeCombine(op, code, inputs, where)
    return _CodeTransform(op, code)


def show(spec: TensorSpec) -> str:
    """``FP32 [-1, 4]``; ``FP64 (or FP32) [-1, 4]`` when it accepts more datatypes."""
    more = f" (or {', '.join(sorted(spec.accepts))})" if spec.accepts else ""
    return f"{spec.datatype}{more} {list(spec.shape)}"


def merge_shapes(specs: Sequence[TensorSpec], where: str, what: str) -> tuple[int, ...]:
    """One shape that fits every spec: same rank, known sizes agree (a known size beats -1)."""
    first = specs[0]
    shape = list(first.shape)
    for spec in specs[1:]:
        clash = len(spec.shape) != len(shape) or any(
            a != -1 and b != -1 and a != b for a, b in zip(spec.shape, shape, strict=False)
        )
        if clash:
            raise LoadError(f"{where}: {what} {first.name} gives {show(first)} but {spec.name} gives {show(spec)}")
        shape = [b if a == -1 else a for a, b in zip(shape, spec.shape, strict=True)]
    return tuple(shape)


def datatype_of_dtype(dtype: np.dtype[Any]) -> str:
    return datatype_of(np.empty(0, dtype))


def _output_name(specs: Sequence[TensorSpec]) -> str:
    """A combiner's output: the name its sources share (``probabilities``), else ``y``."""
    names = {spec.name.partition(".")[2] or spec.name for spec in specs}
    return names.pop() if len(names) == 1 else "y"


def _one(inputs: Mapping[str, TensorSpec]) -> tuple[str, TensorSpec]:
    return next(iter(inputs.items()))


class _Standardize:
    def __init__(self, op: Standardize, inputs: Mapping[str, TensorSpec], where: str) -> None:
        self._name, spec = _one(inputs)
        if spec.datatype not in NUMERIC or not spec.shape:
            raise LoadError(f"{where}: standardize needs a numeric tensor of rank >= 1; {spec.name} gives {show(spec)}")
        if spec.shape[-1] not in (-1, len(op.mean)):
            raise LoadError(
                f"{where}: standardize has {len(op.mean)} means and stds but {spec.name} gives {show(spec)}"
            )
        dtype = DATATYPES[spec.datatype] if spec.datatype in ("FP16", "FP32", "FP64") else np.dtype(np.float64)
        self._mean, self._std = np.array(op.mean, dtype), np.array(op.std, dtype)
        self.outputs = (TensorSpec("y", datatype_of_dtype(dtype), spec.shape),)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs[self._name]
        if x.ndim == 0 or x.shape[-1] != len(self._mean):
            raise InvalidInput(f"standardize needs {len(self._mean)} values per row, got shape {list(x.shape)}")
        return {"y": (x.astype(self._mean.dtype, copy=False) - self._mean) / self._std}


class _Select:
    def __init__(self, op: Select, inputs: Mapping[str, TensorSpec], where: str) -> None:
        self._name, spec = _one(inputs)
        if len(spec.shape) != 2:
            raise LoadError(f"{where}: select takes columns of a 2-D tensor; {spec.name} gives {show(spec)}")
        if spec.shape[1] != -1 and max(op.columns) >= spec.shape[1]:
            raise LoadError(f"{where}: select picks column {max(op.columns)} but {spec.name} gives {show(spec)}")
        self._columns = np.array(op.columns, dtype=np.intp)
        self.outputs = (TensorSpec("y", spec.datatype, (spec.shape[0], len(op.columns))),)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs[self._name]
        if x.ndim != 2 or x.shape[1] <= self._columns.max():
            raise InvalidInput(f"select picks column {self._columns.max()}, got shape {list(x.shape)}")
        return {"y": x[:, self._columns]}


class _Cast:
    def __init__(self, op: Cast, inputs: Mapping[str, TensorSpec], where: str) -> None:
        self._name, spec = _one(inputs)
        if spec.datatype != op.datatype and "BYTES" in (spec.datatype, op.datatype):
            raise LoadError(f"{where}: cast to {op.datatype}: {spec.name} gives {show(spec)}; only numbers convert")
        self._dtype = DATATYPES[op.datatype]
        self.outputs = (TensorSpec("y", op.datatype, spec.shape),)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs[self._name].astype(self._dtype, copy=False)}


class _Rename:
    """Passes its inputs on, named after the node's input names."""

    def __init__(self, inputs: Mapping[str, TensorSpec]) -> None:
        self.outputs = tuple(TensorSpec(name, s.datatype, s.shape) for name, s in inputs.items())

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(inputs)


class _Mean:
    """Element-wise (weighted) mean, in the inputs' promoted floating datatype."""

    def __init__(self, op: Combine, inputs: Mapping[str, TensorSpec], where: str) -> None:
        specs = list(inputs.values())
        bad = [s.name for s in specs if s.datatype not in NUMERIC]
        if bad:
            raise LoadError(f"{where}: {op.how} needs numeric inputs; {bad} are not")
        dtype = np.result_type(*(DATATYPES[s.datatype] for s in specs))
        self._dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
        weights = op.weights or (1.0,) * len(specs)
        self._weights = np.array(weights, np.float64) / sum(weights)
        shape = merge_shapes(specs, where, f"{op.how} cannot combine:")
        self.outputs = (TensorSpec(_output_name(specs), datatype_of_dtype(self._dtype), shape),)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = _same_shape(inputs.values())
        total = sum(w * a.astype(self._dtype, copy=False) for w, a in zip(self._weights, arrays, strict=True))
        return {self.outputs[0].name: np.asarray(total).astype(self._dtype, copy=False)}


class _Vote:
    """Majority vote per row over class labels ([N], integers or BYTES) or class scores ([N, C],
    floating: the argmax of each row is its vote). Ties go to the smallest label, as in
    scikit-learn's VotingClassifier."""

    def __init__(self, inputs: Mapping[str, TensorSpec], where: str) -> None:
        labels = []
        for spec in inputs.values():
            if len(spec.shape) == 2 and spec.datatype in ("FP16", "FP32", "FP64"):
                labels.append(TensorSpec(spec.name, "INT64", spec.shape[:1]))
            elif len(spec.shape) == 1 and (spec.datatype == "BYTES" or DATATYPES[spec.datatype].kind in "iu"):
                labels.append(spec)
            else:
                raise LoadError(
                    f"{where}: majority_vote takes class labels (integers or BYTES, [N]) or class scores "
                    f"(floating, [N, C]); {spec.name} gives {show(spec)}"
                )
        kinds = {s.datatype == "BYTES" for s in labels}
        if len(kinds) > 1:
            given = ", ".join(f"{s.name} gives {s.datatype}" for s in labels)
            raise LoadError(f"{where}: majority_vote cannot compare BYTES labels with integer ones ({given})")
        dtype = np.result_type(*(DATATYPES[s.datatype] for s in labels))
        self._dtype = dtype
        rows = merge_shapes(labels, where, "majority_vote cannot combine:")
        self.outputs = (TensorSpec("label", datatype_of_dtype(dtype), rows),)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        votes = [(a.argmax(axis=1) if a.ndim == 2 else a).astype(self._dtype, copy=False) for a in inputs.values()]
        stacked = np.stack(_same_shape(votes))  # (voters, rows)
        classes, codes = np.unique(stacked.ravel(), return_inverse=True)  # sorted: argmax takes the smallest
        codes = codes.reshape(stacked.shape)
        counts = np.zeros((stacked.shape[1], len(classes)), np.int64)
        np.add.at(counts, (np.broadcast_to(np.arange(stacked.shape[1]), stacked.shape), codes), 1)
        return {"label": classes[counts.argmax(axis=1)]}


class _CodeTransform:
    """Trusted ``__call__(inputs: dict[str, ndarray]) -> dict[str, ndarray]``, held to ``produces``."""

    def __init__(self, op: Code, instance: object) -> None:
        self._call = instance
        self.outputs = op.produces

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._call(dict(inputs))  # type: ignore[operator]
        if not isinstance(result, Mapping):
            raise RuntimeFailure(f"code returned {type(result).__name__}, not a dict of arrays")
        missing = [s.name for s in self.outputs if s.name not in result]
        if missing:
            raise RuntimeFailure(f"code did not return output(s) {missing} it declares in produces")
        return {s.name: conform(result[s.name], s) for s in self.outputs}


class _CodeCombine:
    """Trusted ``__call__(inputs: list[ndarray]) -> ndarray``; it produces the inputs' merged spec
    (promoted datatype) unless ``produces`` says otherwise."""

    def __init__(self, op: Code, instance: object, inputs: Mapping[str, TensorSpec], where: str) -> None:
        self._call = instance
        specs = list(inputs.values())
        name = _output_name(specs)
        if op.produces:
            spec = op.produces[0]
            self.outputs = (TensorSpec(name, spec.datatype, spec.shape),)
            return
        if len({s.datatype == "BYTES" for s in specs}) > 1:
            raise LoadError(f"{where}: custom combiner mixes BYTES and numeric inputs; declare produces")
        dtype = np.result_type(*(DATATYPES[s.datatype] for s in specs))
        shape = merge_shapes(specs, where, "custom combiner inputs differ (declare produces):")
        self.outputs = (TensorSpec(name, datatype_of_dtype(dtype), shape),)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.outputs[0]
        return {spec.name: conform(self._call(list(inputs.values())), spec)}  # type: ignore[operator]


def conform(value: object, spec: TensorSpec) -> np.ndarray:
    """``value`` as an array of ``spec``'s datatype; RuntimeFailure if its shape does not fit."""
    array = np.asarray(value)
    fits = array.ndim == len(spec.shape) and all(w in (-1, g) for g, w in zip(array.shape, spec.shape, strict=True))
    if not fits:
        raise RuntimeFailure(f"code returned {spec.name!r} with shape {list(array.shape)}, not {show(spec)}")
    dtype = DATATYPES[spec.datatype]
    try:
        return array if array.dtype == dtype else array.astype(dtype)
    except (TypeError, ValueError) as exc:
        raise RuntimeFailure(f"code returned {spec.name!r} as {array.dtype}, not {spec.datatype}: {exc}") from None


def _same_shape(values: Iterable[np.ndarray]) -> list[np.ndarray]:
    arrays = list(values)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise RuntimeFailure(f"inputs to combine have different shapes: {[list(a.shape) for a in arrays]}")
    return arrays


def load_code(op: Code, where: str) -> tuple[object, str]:
    """Import ``op.path`` as a fresh module and instantiate ``op.class_name(**op.options)``.

    Returns the instance and the module's name in ``sys.modules`` (drop it when the graph goes).
    Blocks (it runs the module). Raises LoadError with what went wrong."""
    module_name = f"_modelserve_graph_code_{next(_serial)}"
    spec = importlib.util.spec_from_file_location(module_name, op.path)
    if spec is None or spec.loader is None:
        raise LoadError(f"{where}: Python cannot import {op.path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up there
    try:
        spec.loader.exec_module(module)
        cls = getattr(module, op.class_name, None)
        if not isinstance(cls, type):
            raise LoadError(f"{where}: {op.path.name} has no class {op.class_name!r}")
        instance = cls(**op.options)
        if not callable(instance):
            raise LoadError(f"{where}: {op.class_name} objects are not callable; give the class a __call__")
    except LoadError:
        sys.modules.pop(module_name, None)
        raise
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise LoadError(f"{where}: {op.path.name} ({op.class_name}) raised {type(exc).__name__}: {exc}") from exc
    return instance, module_name


class ModelCall:
    """A model node (one route) or a router (a weighted random route per request): calls the
    chosen model through the manager, asking only for the outputs wanted, and casts what the
    routes give differently to the node's merged datatypes."""

    def __init__(self, manager: ModelManager, routes: Sequence[Route], casts: Mapping[str, str]) -> None:
        self._manager = manager
        self.routes = tuple(routes)
        self._cum = list(itertools.accumulate(r.weight for r in routes))
        self._casts = {name: DATATYPES[datatype] for name, datatype in casts.items()}
        self._random = random.Random()

    def choose(self) -> Route:
        if len(self.routes) == 1:
            return self.routes[0]
        return self._random.choices(self.routes, cum_weights=self._cum)[0]

    async def __call__(self, inputs: Mapping[str, np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]:
        route = self.choose()
        request = InferRequest(
            inputs=[Tensor(name, datatype_of(a), a) for name, a in inputs.items()],
            outputs=[RequestedOutput(name) for name in wanted],
        )
        manager, started = self._manager, time.perf_counter()
        outcome = "client_error"  # unless it ends otherwise: cancelled, the graph's client gave up
        version: int | None = route.version
        try:
            with await manager.checkout(route.model, route.version, route.label) as handle:
                version = handle.version
                response = await handle.infer(request)
            outcome = "success"
        except Exception as exc:
            outcome = "client_error" if isinstance(exc, InvalidInput) else "server_error"
            raise
        finally:  # the called model counts the request too, under protocol "graph"
            manager.record_request(route.model, version, "graph", outcome, time.perf_counter() - started)
        produced = {t.name: t.data for t in response.outputs}
        for name, dtype in self._casts.items():
            if name in produced and produced[name].dtype != dtype:
                produced[name] = produced[name].astype(dtype)
        return produced
