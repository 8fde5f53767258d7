"""Checks a decoded request against a model's public signature and shapes its tensors for the runtime.

Everything here runs once per request, so the per-model work (name maps, dtypes) is done once in
:class:`Plan` when a version becomes READY.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve.core.signature import Adapter
from modelserve.errors import InvalidInput, RuntimeFailure
from modelserve.types import DATATYPES, InferOutput, InferRequest, TensorSpec


@dataclass(frozen=True, slots=True)
class _InputPlan:
    spec: TensorSpec
    native_name: str
    native_dtype: np.dtype[Any]
    allowed: frozenset[str]


@dataclass(frozen=True, slots=True)
class _OutputPlan:
    spec: TensorSpec
    native_name: str
    dtype: np.dtype[Any]


class Plan:
    """Per-signature lookup tables; ``model_id`` is used in messages ("iris version 1")."""

    __slots__ = ("_all_outputs", "_by_native", "_inputs", "_outputs", "model_id", "signature")

    def __init__(self, model_id: str, adapter: Adapter) -> None:
        self.model_id = model_id
        self.signature = adapter.public
        native_inputs = {p: adapter.input_names.get(p.name, p.name) for p in adapter.public.inputs}
        self._inputs = {
            spec.name: _InputPlan(
                spec, native, DATATYPES[_native_spec(adapter, native).datatype], spec.accepts | {spec.datatype}
            )
            for spec, native in native_inputs.items()
        }
        by_public = {v: k for k, v in adapter.output_names.items()}
        self._outputs = {
            spec.name: _OutputPlan(spec, by_public.get(spec.name, spec.name), DATATYPES[spec.datatype])
            for spec in adapter.public.outputs
        }
        self._by_native = {plan.native_name: plan for plan in self._outputs.values()}
        self._all_outputs = list(self._by_native)

    def inputs(self, request: InferRequest) -> dict[str, np.ndarray]:
        """Native-named arrays for the runtime. Raises InvalidInput naming the input and the problem."""
        feeds: dict[str, np.ndarray] = {}
        for tensor in request.inputs:
            plan = self._inputs.get(tensor.name)
            if plan is None:
                raise InvalidInput(
                    f"model {self.model_id} has no input {tensor.name!r}; its inputs are {list(self._inputs)}"
                )
            if plan.native_name in feeds:
                raise InvalidInput(f"input {tensor.name!r} of model {self.model_id} is given more than once")
            feeds[plan.native_name] = self._check(tensor.name, tensor.datatype, tensor.data, plan)
        if len(feeds) != len(self._inputs):
            given = {t.name for t in request.inputs}
            missing = [name for name in self._inputs if name not in given]
            raise InvalidInput(f"model {self.model_id} needs input(s) {missing}, which the request lacks")
        return feeds

    def requested(self, request: InferRequest) -> list[str] | None:
        """Native names of the outputs asked for (None: all). Raises InvalidInput for unknown ones."""
        if request.outputs is None:
            return None
        names = []
        for out in request.outputs:
            plan = self._outputs.get(out.name)
            if plan is None:
                raise InvalidInput(
                    f"model {self.model_id} has no output {out.name!r}; its outputs are {list(self._outputs)}"
                )
            if plan.native_name in names:
                raise InvalidInput(f"output {out.name!r} of model {self.model_id} is requested more than once")
            names.append(plan.native_name)
        return names

    def outputs(self, raw: Mapping[str, np.ndarray], requested: list[str] | None) -> list[InferOutput]:
        """Public outputs in signature order (or request order), cast to their declared datatypes."""
        wanted = requested if requested is not None else self._all_outputs
        result = []
        for native in wanted:
            plan = self._by_native[native]
            if native not in raw:
                raise RuntimeFailure(f"runtime of {self.model_id} did not return output {native!r}")
            result.append(InferOutput(plan.spec.name, plan.spec.datatype, _cast_output(raw[native], plan.dtype)))
        return result

    def _check(self, name: str, datatype: str, data: np.ndarray, plan: _InputPlan) -> np.ndarray:
        spec = plan.spec
        if datatype not in plan.allowed:
            expected = " or ".join(sorted(plan.allowed))
            raise InvalidInput(f"input {name!r} of model {self.model_id}: got datatype {datatype}, expected {expected}")
        shape = data.shape
        if len(shape) != len(spec.shape) or any(w not in (-1, g) for g, w in zip(shape, spec.shape, strict=True)):
            raise InvalidInput(
                f"input {name!r} of model {self.model_id}: got shape {list(shape)}, "
                f"expected {list(spec.shape)} (-1 = any)"
            )
        return data if data.dtype == plan.native_dtype else data.astype(plan.native_dtype)


def _native_spec(adapter: Adapter, native_name: str) -> TensorSpec:
    spec = adapter.native.input(native_name)
    assert spec is not None, native_name  # the adapter was built from the native signature
    return spec


def _cast_output(array: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    array = np.asarray(array)
    if dtype.kind == "O":  # BYTES: str (onnxruntime, scikit-learn labels) becomes UTF-8 bytes
        if array.dtype.kind == "S":
            return array.astype(object)
        if array.dtype.kind == "O" and (array.size == 0 or isinstance(array.flat[0], bytes)):
            return array
        flat = np.empty(array.size, dtype=object)
        flat[:] = [_to_bytes(v) for v in array.ravel().tolist()]
        return flat.reshape(array.shape)
    return array if array.dtype == dtype else array.astype(dtype)


def _to_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
