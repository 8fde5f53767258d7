"""The shared vocabulary: datatypes, signatures, inference requests and responses, model states.

Tensors travel as numpy arrays. BYTES tensors are numpy ``object`` arrays of ``bytes``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Open Inference Protocol datatype name -> numpy dtype. BF16 has no numpy dtype and is not offered.
DATATYPES: Mapping[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

# A version label (``stable``, ``canary``) names a version in requests; never all digits, so that
# it cannot pass for a version number
VERSION_LABEL = re.compile(r"(?![0-9]+$)[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")

_BY_DTYPE: Mapping[np.dtype[Any], str] = {dt: name for name, dt in DATATYPES.items()}


def datatype_of(array: np.ndarray) -> str:
    """Protocol datatype of a numpy array; str/bytes arrays are BYTES. Raises TypeError otherwise."""
    name = _BY_DTYPE.get(array.dtype)
    if name is not None:
        return name
    if array.dtype.kind in "SU":
        return "BYTES"
    raise TypeError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model. ``shape`` uses -1 for a variable dimension.

    ``accepts`` lists further datatypes a client may send for this input; the core casts them
    to ``datatype`` before the runtime sees them (e.g. FP32 for a scikit-learn FP64 input).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)


@dataclass(slots=True)
class Tensor:
    """A request or response tensor: ``data`` already has its shape and ``datatype``'s dtype."""

    name: str
    datatype: str
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


InferInput = Tensor
InferOutput = Tensor


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    inputs: list[InferInput]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None  # None: every output


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[InferOutput]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


class ModelState(enum.Enum):
    """Lifecycle of one model version: LOADING -> READY | FAILED; READY -> UNLOADING -> UNLOADED."""

    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"
    UNLOADED = "UNLOADED"


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: int
    state: ModelState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What the metadata endpoints report for one model (or one version of it)."""

    name: str
    versions: tuple[int, ...]  # READY versions, ascending
    platform: str
    signature: Signature
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of the repository index: a model, and one of its versions when it has any."""

    name: str
    version: int | None = None
    state: ModelState | None = None
    reason: str = ""
