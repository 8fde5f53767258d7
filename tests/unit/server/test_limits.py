"""JSON nesting and header limits (server/limits.py): the fast path agrees with a plain parse."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve.errors import InvalidInput
from modelserve.server import limits


def _depth(doc: object) -> int:
    if isinstance(doc, dict):
        return 1 + max((_depth(v) for v in doc.values()), default=0)
    if isinstance(doc, list):
        return 1 + max((_depth(v) for v in doc), default=0)
    return 0


def _too_deep(body: bytes, limit: int) -> bool:
    try:
        limits.check_json_depth(body, limit)
    except InvalidInput as exc:
        message = exc.message
    else:
        return False
    assert f"more than {limit} levels" in message
    return True


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(alphabet='[]{}"\\ab,:'),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\ab'), children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(json_values, st.integers(min_value=1, max_value=8))
def test_depth_check_agrees_with_the_parsed_document(doc: object, limit: int) -> None:
    """Brackets inside strings, escaped quotes and backslashes never fool the count."""
    body = orjson.dumps(doc)
    assert _too_deep(body, limit) == (_depth(doc) > limit)


@pytest.mark.parametrize("escaped", [False, True])
def test_deep_documents_are_refused_and_shallow_ones_pass(escaped: bool) -> None:
    text = '"a\\"b"' if escaped else '"a[b"'
    deep = "[" * 40 + text + "]" * 40
    shallow = "[" * 32 + text + "]" * 32
    assert _too_deep(deep.encode(), 32)
    assert not _too_deep(shallow.encode(), 32)


def test_big_flat_tensor_is_cheap_and_passes() -> None:
    body = json.dumps({"inputs": [{"name": "x", "shape": [100_000, 4], "data": [[1.5, 2, 3, 4]] * 100_000}]}).encode()
    assert not _too_deep(body, 32)


def test_brackets_spread_over_chunks_are_counted_across_them() -> None:
    padding = '"' + "x" * (limits._CHUNK - 10) + '"'  # the string ends near a chunk boundary
    body = ("[" + padding + "," + "[" * 40 + "]" * 40 + "]").encode()
    assert _too_deep(body, 32)


def test_headers_over_the_limits_are_named() -> None:
    few = [(b"a", b"1")] * 3
    assert limits.headers_problem(few, 3, 100) is None
    assert "4 headers; the limit is 3" in (limits.headers_problem([*few, (b"b", b"2")], 3, 100) or "")
    assert "hold 101 bytes; the limit is 100" in (limits.headers_problem([(b"k", b"v" * 100)], 3, 100) or "")
