"""Request limits checked at the edge, before a request reaches a model (ServerConfig).

- **Headers**: at most ``max_headers`` request headers of ``max_header_bytes`` in all (names and
  values): more gets 431 before the body is read. gRPC metadata is bounded by the same byte limit
  (``grpc.max_metadata_size``).
- **JSON nesting**: a JSON body nested deeper than ``max_json_depth`` gets 400 before it is
  parsed. orjson itself stops at 1024 levels; the limit keeps deep but legal documents (which
  cost Python recursion everywhere they are walked) out, at a fraction of the parse's cost: a
  vectorised bracket count that skips strings, exact unless a string holds an escaped quote
  (then a plain scan decides).

(The limit on tensor elements per request is the core's, ``ModelManager.max_request_elements``:
it covers every protocol, and graphs.)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from modelserve.errors import InvalidInput

_CHUNK = 1 << 20  # bytes scanned per vectorised step: bounded memory for any body size
_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPEN = (0x5B, 0x7B)  # [ {
_CLOSE = (0x5D, 0x7D)  # ] }


def headers_problem(headers: Iterable[tuple[bytes, bytes]], max_headers: int, max_bytes: int) -> str | None:
    """Why the request's headers are over the limits (the REST app answers 431), or None."""
    count = size = 0
    for name, value in headers:
        count += 1
        size += len(name) + len(value)
    if count > max_headers:
        return f"the request has {count} headers; the limit is {max_headers}"
    if size > max_bytes:
        return f"the request's headers hold {size} bytes; the limit is {max_bytes}"
    return None


def check_json_depth(body: bytes | memoryview, limit: int) -> None:
    """Raises InvalidInput when the JSON text ``body`` nests arrays and objects deeper than ``limit``.
    Text that is not JSON is left for the parser to refuse."""
    if len(body) <= limit:
        return  # each level needs a byte
    data = bytes(body)
    if data.count(b"[") + data.count(b"{") <= limit:
        return  # fewer brackets in all than the limit: the usual flat tensor
    depth = _depth_scanned(data, limit) if b'\\"' in data else _depth_vectorised(data, limit)
    if depth > limit:
        raise InvalidInput(f"the JSON body is nested more than {limit} levels deep; the limit is {limit}")


def _depth_vectorised(data: bytes, limit: int) -> int:
    """Max nesting, for text whose strings hold no escaped quote: every quote toggles a string."""
    inside = 0  # 1 while the previous chunk ended inside a string
    depth = deepest = 0
    view = np.frombuffer(data, dtype=np.uint8)
    for start in range(0, len(view), _CHUNK):
        chunk = view[start : start + _CHUNK]
        quotes = (chunk == _QUOTE).astype(np.int8)
        in_string = (np.cumsum(quotes, dtype=np.int64) + inside) & 1
        steps = ((chunk == _OPEN[0]) | (chunk == _OPEN[1])).astype(np.int8) - (
            (chunk == _CLOSE[0]) | (chunk == _CLOSE[1])
        ).astype(np.int8)
        steps[in_string == 1] = 0
        levels = np.cumsum(steps, dtype=np.int64) + depth
        if len(levels):
            deepest = max(deepest, int(levels.max()))
            depth = int(levels[-1])
            inside = int(in_string[-1])
        if deepest > limit:
            break
    return deepest


def _depth_scanned(data: bytes, limit: int) -> int:
    """Max nesting by a plain scan that honours escapes (rare: strings with escaped quotes)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif byte in _CLOSE:
            depth -= 1
    return deepest
