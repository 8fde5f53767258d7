"""ResponseCache: keys that tell apart what differs, LRU eviction by entries and bytes, frozen values."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.core.cache import ResponseCache


def key(**feeds: np.ndarray) -> bytes:
    return ResponseCache.key(feeds, None, None)


def test_keys_differ_exactly_when_the_request_differs() -> None:
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    assert key(x=x) == key(x=x.copy())
    assert key(x=x) != key(x=x.astype(np.float64))  # same values, another dtype
    assert key(x=x) != key(x=x.reshape(2, 1))  # same bytes, another shape
    assert key(x=x) != key(y=x)  # another input name
    assert ResponseCache.key({"x": x}, ["a"], None) != ResponseCache.key({"x": x}, None, None)
    assert ResponseCache.key({"x": x}, None, "other") != ResponseCache.key({"x": x}, None, None)
    split = np.array([b"ab", b"c"], dtype=object)
    other = np.array([b"a", b"bc"], dtype=object)
    assert key(s=split) != key(s=other)
    assert key(x=np.asfortranarray(np.arange(6.0).reshape(2, 3))) == key(x=np.arange(6.0).reshape(2, 3))


def test_least_recently_used_goes_first() -> None:
    cache = ResponseCache(max_entries=2, max_bytes=1 << 20)
    for name in (b"a", b"b"):
        cache.put(name, {"y": np.zeros(1)})
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"c", {"y": np.zeros(1)})
    assert cache.get(b"b") is None and cache.get(b"a") is not None and cache.get(b"c") is not None
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (3, 1, 1)


def test_bytes_bound_the_cache() -> None:
    cache = ResponseCache(max_entries=100, max_bytes=100)
    cache.put(b"big", {"y": np.zeros(20)})  # 160 bytes: larger than the whole cache, not kept
    assert len(cache) == 0
    for i in range(5):
        cache.put(bytes([i]), {"y": np.zeros(5)})  # 40 bytes each: two fit
    assert len(cache) == 2 and cache.get(bytes([4])) is not None


def test_cached_arrays_are_private_and_read_only() -> None:
    cache = ResponseCache(max_entries=10, max_bytes=1 << 20)
    out = np.array([1.0, 2.0])
    cache.put(b"k", {"y": out})
    out[0] = 99.0  # the runtime reuses its buffer
    hit = cache.get(b"k")
    assert hit is not None and hit["y"].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="read-only"):
        hit["y"][0] = 5.0
