"""JSON values to typed numpy arrays, with the checks every JSON protocol needs.

JSON has no tensor type, so a client's ``data`` is checked element by element against the declared
datatype: no strings in numeric tensors, no fractions in integer ones, integers in range, no
ragged nesting. Element counts are computed with Python ints, which cannot overflow.
"""

from __future__ import annotations

import base64
import itertools
import math
from typing import Any

import numpy as np

from modelserve.errors import InvalidInput, RequestTooLarge
from modelserve.types import DATATYPES

MAX_RANK = 32
_KINDS = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings", "O": "mixed values"}


def check_datatype(name: str, datatype: object) -> np.dtype[Any]:
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r}; expected one of {list(DATATYPES)}")
    return dtype


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(
            f"input {name!r}: shape must be a list of at most {MAX_RANK} non-negative integers, got {shape!r}"
        )
    return tuple(shape)


def reshape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array.reshape(shape)`` for a matching element count; numpy refuses some empty shapes."""
    try:
        return array.reshape(shape)
    except ValueError:  # e.g. [0, 2**62]: zero elements, but a size numpy cannot represent
        raise InvalidInput(f"input {name!r}: shape {list(shape)} is too large to represent") from None


def to_array(name: str, datatype: str, data: object, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``data`` (flat or nested as ``shape``) as an array of ``datatype``'s dtype.

    With ``shape`` None the nesting gives the shape (TF Serving). Raises InvalidInput.
    """
    dtype = DATATYPES[datatype]
    # BYTES use dtype=object: numpy's "S" dtype would strip trailing NULs from binary strings
    if datatype == "BYTES":
        try:
            data = _unwrap_b64(name, data)
        except RecursionError:
            raise InvalidInput(f"input {name!r}: data is nested deeper than {MAX_RANK} levels") from None
    try:
        array = np.array(data, dtype=object) if datatype == "BYTES" else np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"input {name!r}: data is ragged (nested lists of unequal lengths), mixes lists and "
            f"scalars, or is nested deeper than {MAX_RANK} levels"
        ) from None
    if dtype.kind in "iu" and array.dtype.kind in "fO":
        array = _big_integers(name, datatype, dtype, data, array)
    elif dtype.kind in "iuf" and array.dtype.kind in "iuf" and bool in _element_types(data):
        raise InvalidInput(
            f"input {name!r}: datatype {datatype} needs numbers in data, got booleans (true/false) among them"
        )
    if shape is not None:
        array = _reshape(name, array, shape)
    return _cast(name, datatype, dtype, array)


def _big_integers(name: str, datatype: str, dtype: np.dtype[Any], data: object, array: np.ndarray) -> np.ndarray:
    """numpy infers float64 (losing precision) for ints beyond the int64 range; redo them exactly."""
    exact = np.array(data, dtype=object)
    if not all(type(v) is int for v in exact.ravel().tolist()):
        return array  # genuinely not all integers: _cast rejects it with a clear message
    try:
        return np.array(data, dtype=dtype)
    except OverflowError:
        raise InvalidInput(f"input {name!r}: a value is out of range for {datatype}") from None


def _element_types(data: object) -> set[type]:
    """The types of the leaves of nested lists; ``map`` keeps the per-element work in C."""
    if not isinstance(data, list):
        return {type(data)}
    if data and isinstance(data[0], list):
        if data[0] and isinstance(data[0][0], list):
            return set().union(*(_element_types(row) for row in data))
        return set(map(type, itertools.chain.from_iterable(data)))
    return set(map(type, data))


def _reshape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    expected = math.prod(shape)
    if array.ndim > 1 and array.shape != shape:
        raise InvalidInput(f"input {name!r}: nested data has shape {list(array.shape)} but shape says {list(shape)}")
    if array.size != expected:
        raise InvalidInput(f"input {name!r}: data has {array.size} elements but shape {list(shape)} needs {expected}")
    return reshape(name, array, shape)


def _cast(name: str, datatype: str, dtype: np.dtype[Any], array: np.ndarray) -> np.ndarray:
    kind = array.dtype.kind
    if array.size == 0:
        return array.astype(dtype) if datatype != "BYTES" else np.empty(array.shape, dtype=object)
    if datatype == "BYTES":
        return _to_bytes(name, array)
    if datatype == "BOOL":
        if kind != "b":
            raise _wrong(name, datatype, kind, "true/false")
        return array
    if dtype.kind in "iu":
        if kind not in "iu":
            raise _wrong(name, datatype, kind, "integers")
        check_int_range(name, datatype, dtype, array)
        return array.astype(dtype, copy=False)
    if kind not in "iuf":
        raise _wrong(name, datatype, kind, "numbers")
    # FP32 can hold any int64 in range, FP16 cannot (max 65504); floats may exceed either
    if dtype.itemsize < 8 and (kind == "f" or dtype.itemsize == 2):
        top = np.finfo(dtype).max
        limit = float(top)
        # values below max + half a unit in the last place round to max, not to infinity: the
        # shortest text of FP32's max, "3.4028235e+38", is above max as a float64 and still fits
        overflow = limit + (limit - float(np.nextafter(top, top.dtype.type(0)))) / 2
        # min/max in the array's own dtype: no float64 copy (NaN compares false, and passes)
        peak = max(abs(float(array.max())), abs(float(array.min())))
        if peak >= overflow and math.isfinite(peak):
            raise InvalidInput(f"input {name!r}: value {peak} is out of range for {datatype} (max {limit})")
    return array.astype(dtype, copy=False)


def check_int_range(name: str, datatype: str, dtype: np.dtype[Any], array: np.ndarray) -> None:
    """Reject integers that ``dtype`` cannot hold, naming the first offending value."""
    if not array.size:
        return
    info = np.iinfo(dtype)
    low, high = array.min(), array.max()
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise InvalidInput(f"input {name!r}: value {int(bad)} is out of range for {datatype} [{info.min}, {info.max}]")


def _to_bytes(name: str, array: np.ndarray) -> np.ndarray:
    flat = array.ravel()
    for i, item in enumerate(flat):
        if isinstance(item, str):
            flat[i] = item.encode("utf-8")
        elif not isinstance(item, bytes):
            raise InvalidInput(
                f"input {name!r}: datatype BYTES needs strings in data, got {type(item).__name__} "
                "(ragged nesting or a non-string element)"
            )
    return flat.reshape(array.shape)


def _wrong(name: str, datatype: str, kind: str, expected: str) -> InvalidInput:
    got = _KINDS.get(kind, f"values of numpy kind {kind!r}")
    return InvalidInput(f"input {name!r}: datatype {datatype} needs {expected} in data, got {got}")


def _unwrap_b64(name: str, data: object) -> object:
    """TF Serving sends binary strings as ``{"b64": "..."}``; turn them into bytes."""
    if isinstance(data, dict):
        if set(data) == {"b64"} and isinstance(data["b64"], str):
            try:
                return base64.b64decode(data["b64"], validate=True)
            except ValueError:
                raise InvalidInput(f"input {name!r}: invalid base64 in {data['b64'][:40]!r}") from None
        return data
    if isinstance(data, list) and any(isinstance(item, dict | list) for item in data):
        return [_unwrap_b64(name, item) for item in data]
    return data


class ElementBudget:
    """Elements a request's inputs may hold in all (``limit``; 0: no limit), taken input by input
    from the declared shapes *before* any data is decoded, so that a small body cannot make the
    decoder build millions of objects (BYTES elements cost 4 bytes of body, ~40 of memory)."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, name: str, shape: tuple[int, ...]) -> None:
        """Raises RequestTooLarge when input ``name``'s shape goes over what is left."""
        if not self.limit:
            return
        count = math.prod(shape)
        self.left -= count
        if self.left < 0:
            raise RequestTooLarge(
                f"input {name!r} with shape {list(shape)} takes the request past {self.limit} tensor elements "
                "(max_tensor_elements)"
            )
