"""The binary tensor extension of the v2 REST protocol (Triton's ``binary_data``).

A body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by raw tensors, in
input order, each ``binary_data_size`` bytes: little-endian values, or for BYTES a 4-byte
little-endian length before each element. Responses use the same layout for outputs that the
request asks to get as binary (``binary_data_output`` for all, ``binary_data`` per output).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from modelserve.errors import InvalidInput
from modelserve.protocol.json_tensor import reshape
from modelserve.types import DATATYPES

HEADER = "inference-header-content-length"
_LEN = struct.Struct("<I")


def header_length(raw: str | None, body_size: int) -> int | None:
    """The JSON header length from the HTTP header's value, None without one. Raises InvalidInput."""
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or int(raw) > body_size:
        raise InvalidInput(
            f"Inference-Header-Content-Length must be an integer between 0 and the body size {body_size}, got {raw!r}"
        )
    return int(raw)


def decode_tensor(name: str, datatype: str, shape: tuple[int, ...], blob: memoryview) -> np.ndarray:
    """``blob`` as an array of ``datatype`` and ``shape``. Raises InvalidInput on a size mismatch."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return reshape(name, _decode_bytes(name, blob, count), shape)
    dtype = DATATYPES[datatype].newbyteorder("<")
    if count * dtype.itemsize != len(blob):
        raise InvalidInput(
            f"input {name!r}: its binary data is {len(blob)} bytes but shape {list(shape)} of "
            f"{datatype} needs {count * dtype.itemsize}"
        )
    if datatype == "BOOL" and count and (peak := int(np.frombuffer(blob, dtype=np.uint8).max())) > 1:
        raise InvalidInput(f"input {name!r}: BOOL binary data must hold bytes 0 or 1, found {peak}")
    return reshape(name, np.frombuffer(blob, dtype=dtype), shape)


def _decode_bytes(name: str, blob: memoryview, count: int) -> np.ndarray:
    items: list[bytes] = []
    offset, end = 0, len(blob)
    while offset < end:
        if offset + 4 > end:
            raise InvalidInput(f"input {name!r}: BYTES element {len(items)} has a truncated length prefix")
        (size,) = _LEN.unpack_from(blob, offset)
        offset += 4
        if offset + size > end:
            raise InvalidInput(f"input {name!r}: BYTES element {len(items)} says {size} bytes but fewer remain")
        items.append(bytes(blob[offset : offset + size]))
        offset += size
    if len(items) != count:
        raise InvalidInput(f"input {name!r}: binary data holds {len(items)} BYTES elements but the shape needs {count}")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def encode_tensor(array: np.ndarray) -> bytes:
    if array.dtype.kind == "O":
        return b"".join(_LEN.pack(len(item)) + item for item in array.ravel().tolist())
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def wants_binary(request_parameters: dict[str, Any], output_parameters: dict[str, Any] | None) -> bool:
    """Whether one output goes out as binary: its own ``binary_data``, else the request's default."""
    if output_parameters and "binary_data" in output_parameters:
        return output_parameters["binary_data"] is True
    return request_parameters.get("binary_data_output") is True
