"""ONNX models on onnxruntime (CPU).

Threads are set per model (``threads`` in config.yaml, default 1) rather than left to
onnxruntime's default of one thread per core: several models and instances share the CPU, and
small models are fastest single-threaded. scikit-learn ZipMap outputs (a sequence of maps) are
returned as an FP32 ``[batch, classes]`` tensor ordered by class.

External data: a tensor may keep its bytes in another file, named by its ``location``. The model
file is untrusted, so before onnxruntime sees it, every tensor that names external data (in the
graph, its subgraphs, node attributes, sparse tensors, functions and training graphs) must name
an existing regular file inside the version directory (:func:`~modelserve.runtimes._paths.confined`:
no absolute path, no ``..``, no symlink out), and its ``offset``/``length`` must fit in that file.
Recent onnxruntime releases (1.32 here) refuse such locations themselves; older ones, which the
extra allows (>= 1.18), may not, and this check names the file and the location either way.
onnxruntime's in-memory marker location (``*/_ORT_MEM_ADDR_/*``, whose offset is a raw pointer)
is refused by name, even where a file by that name exists. The fields are read by
a small protobuf wire-format reader here (:func:`_external_tensors`), over a memory map, so that
the check needs neither the ``onnx`` package (not part of the ``onnx`` extra) nor a copy of the
weights in memory; a file the reader cannot parse is not an ONNX model and fails to load.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig, cuda_index
from modelserve.errors import InvalidInput, LoadError
from modelserve.runtimes._paths import confined
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
        check_external_data(artifact)
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


# --- external data -------------------------------------------------------------------------

_ORT_MEMORY_TAG = "*/_ORT_MEM_ADDR_/*"  # onnxruntime reads the "offset" of such a tensor as a pointer
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL

# message -> {field number: message it holds}, for the fields that can lead to a TensorProto
# (onnx.proto: ModelProto.graph 7, training_info 20, functions 25; GraphProto.node 1,
# initializer 5, sparse_initializer 15; NodeProto.attribute 5; AttributeProto.t 5, g 6,
# tensors 10, graphs 11, sparse_tensor 22, sparse_tensors 23; SparseTensorProto.values 1,
# indices 2; FunctionProto.node 7; TrainingInfoProto.initialization 1, algorithm 2)
_PATHS: Mapping[str, Mapping[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "function": {7: "node"},
    "training": {1: "graph", 2: "graph"},
}


@dataclass(frozen=True, slots=True)
class ExternalTensor:
    name: str
    external: bool  # data_location is EXTERNAL
    entries: Mapping[str, str]  # external_data: location, offset, length, checksum


class _Malformed(ValueError):
    pass


def check_external_data(artifact: Path) -> None:
    """Refuse a model whose tensors name external data outside its directory. Raises LoadError.

    Reads only the model file (memory-mapped), and the size of each external file it names.
    """
    try:
        with (
            artifact.open("rb") as file,
            mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
            memoryview(mapped) as view,
        ):
            tensors = list(_external_tensors(view))
    except ValueError as exc:  # mmap of an empty file, or _Malformed
        reason = "the file is empty" if artifact.stat().st_size == 0 else str(exc)
        raise LoadError(f"{artifact.name}: not an ONNX model (a protobuf ModelProto): {reason}") from None
    except OSError as exc:
        raise LoadError(f"{artifact.name}: cannot read it: {exc}") from None
    for tensor in tensors:
        _check_tensor(artifact, tensor)


def _check_tensor(artifact: Path, tensor: ExternalTensor) -> None:
    what = f"{artifact.name}: external data of tensor {tensor.name!r}"
    location = tensor.entries.get("location")
    if location is None:
        raise LoadError(f"{what} has no 'location'; expected a file name inside the version directory")
    if location == _ORT_MEMORY_TAG:
        raise LoadError(f"{what}: location {location!r} is onnxruntime's in-memory marker; a model file cannot use it")
    path = confined(artifact.parent, location, what=what)
    if not path.is_file():
        raise LoadError(f"{what}: location {location!r} is not a file in the version directory")
    size = path.stat().st_size
    try:
        offset, length = int(tensor.entries.get("offset", "0")), int(tensor.entries.get("length", "0"))
    except ValueError:
        raise LoadError(f"{what}: offset and length must be integers, got {dict(tensor.entries)}") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise LoadError(f"{what}: offset {offset} + length {length} lie outside {location!r} ({size} bytes)")


def _external_tensors(data: memoryview) -> Iterator[ExternalTensor]:
    """Every TensorProto of a serialized ModelProto that names external data. Raises _Malformed.

    Iterative (a stack of spans), so a deeply nested model cannot exhaust Python's recursion.
    Like protobuf itself, a known field with an unexpected wire type is skipped as unknown.
    """
    stack = [("model", 0, len(data))]
    while stack:
        kind, start, end = stack.pop()
        if kind == "tensor":
            tensor = _tensor(data, start, end)
            if tensor.external or tensor.entries:
                yield tensor
            continue
        fields = _PATHS[kind]
        for number, wire, lo, hi in _fields(data, start, end):
            if wire == 2 and number in fields:
                stack.append((fields[number], lo, hi))


def _tensor(data: memoryview, start: int, end: int) -> ExternalTensor:
    name, external, entries = "", False, {}
    for number, wire, lo, hi in _fields(data, start, end):
        if number == 8 and wire == 2:
            name = _text(data, lo, hi)
        elif number == 14 and wire == 0:
            external = hi == _EXTERNAL  # a varint field's value travels in hi
        elif number == 13 and wire == 2:
            pair = {n: _text(data, a, b) for n, w, a, b in _fields(data, lo, hi) if w == 2 and n in (1, 2)}
            entries[pair.get(1, "")] = pair.get(2, "")
    return ExternalTensor(name, external, entries)


def _fields(data: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each field in data[pos:end]; a varint's value is its end."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos, end)
            yield number, wire, pos, value
            continue
        if wire == 2:
            size, pos = _varint(data, pos, end)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:  # groups (3, 4) are not used by onnx.proto, and 6, 7 do not exist
            raise _Malformed(f"field {number} has wire type {wire} at byte {pos}")
        if number == 0 or pos + size > end:
            raise _Malformed(f"field {number} at byte {pos} is cut short or misnumbered")
        yield number, wire, pos, pos + size
        pos += size


def _varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Malformed(f"a varint is cut short or too long at byte {pos}")


def _text(data: memoryview, start: int, end: int) -> str:
    return bytes(data[start:end]).decode("utf-8", errors="replace")
