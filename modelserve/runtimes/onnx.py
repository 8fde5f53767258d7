"""ONNX models on onnxruntime (CPU).

Threads are set per model (``threads`` in config.yaml, default 1) rather than left to
onnxruntime's default of one thread per core: several models and instances share the CPU, and
small models are fastest single-threaded. scikit-learn ZipMap outputs (a sequence of maps) are
returned as an FP32 ``[batch, classes]`` tensor ordered by class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig, cuda_index
from modelserve.errors import InvalidInput, LoadError
from modelserve.runtimes.base import missing_extra
from modelserve.types import Signature, TensorSpec

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
_ZIPMAP_PREFIX = "seq(map("


class OnnxRuntime:
    platform = "onnxruntime_onnx"

    def __init__(self) -> None:
        self.model: Any = None
        self._string_inputs: frozenset[str] = frozenset()
        self._zipmaps: frozenset[str] = frozenset()

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        try:
            import onnxruntime as ort
        except ImportError:
            raise missing_extra("onnxruntime", "onnx") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers: list[Any] = ["CPUExecutionProvider"]
        if config.device != "cpu":
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise LoadError(
                    f"config.yaml asks for device {config.device!r}, but this onnxruntime has no CUDA provider "
                    f"(it has {available}); install onnxruntime-gpu and the CUDA libraries it needs"
                )
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": cuda_index(config.device)}))
        try:
            self.model = ort.InferenceSession(str(artifact), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise LoadError(f"{artifact.name}: onnxruntime cannot load it: {exc}") from None
        if config.device != "cpu" and self.model.get_providers()[0] != "CUDAExecutionProvider":
            # onnxruntime falls back to the CPU when CUDA fails to start; a GPU model must not slip by
            raise LoadError(f"{artifact.name}: onnxruntime could not start CUDA on {config.device}; see its log")
        inputs = tuple(_spec(a, "input") for a in self.model.get_inputs())
        outputs = tuple(_spec(a, "output") for a in self.model.get_outputs())
        self._string_inputs = frozenset(t.name for t in inputs if t.datatype == "BYTES")
        self._zipmaps = frozenset(a.name for a in self.model.get_outputs() if a.type.startswith(_ZIPMAP_PREFIX))
        return Signature(inputs=inputs, outputs=outputs)

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        feeds = {
            name: (_to_str(name, array) if name in self._string_inputs else array) for name, array in inputs.items()
        }
        names = list(outputs) if outputs is not None else [o.name for o in self.model.get_outputs()]
        results = self.model.run(names, feeds)
        return {
            name: (_zipmap_to_tensor(value) if name in self._zipmaps else value)
            for name, value in zip(names, results, strict=True)
        }

    def unload(self) -> None:
        self.model = None


def _spec(arg: Any, kind: str) -> TensorSpec:
    if arg.type.startswith(_ZIPMAP_PREFIX) and kind == "output":
        return TensorSpec(arg.name, "FP32", (-1, -1))
    datatype = _ORT_TYPES.get(arg.type)
    if datatype is None:
        raise LoadError(f"{kind} {arg.name!r} has ONNX type {arg.type}, which modelserve cannot serve")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


def _to_str(name: str, array: np.ndarray) -> np.ndarray:
    """onnxruntime's string tensors hold text: it wants str objects, the protocol gives bytes."""
    flat = np.empty(array.size, dtype=object)
    try:
        flat[:] = [b.decode("utf-8") for b in array.ravel().tolist()]
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"input {name!r}: ONNX string tensors hold UTF-8 text, but an element is not valid UTF-8 ({exc.reason})"
        ) from None
    return flat.reshape(array.shape)


def _zipmap_to_tensor(rows: list[dict[Any, float]]) -> np.ndarray:
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    keys = sorted(rows[0])
    return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)
