"""Response cache (opt-in per model): identical requests answered without running the model.

The key is a BLAKE2b digest of everything that decides the answer: the signature, the requested
outputs, and each input's name, dtype, shape and bytes (BYTES tensors element by element, length
first, so that ``[b"ab", b"c"]`` and ``[b"a", b"bc"]`` differ). A cache belongs to one loaded
version object, so a new version — or the same number reloaded from changed files — starts empty
and never answers with its predecessor's outputs.

Least recently used entries go first once ``max_entries`` or ``max_bytes`` (of output arrays) is
exceeded. Cached arrays are read-only. Runs on the event loop thread only: no lock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Raw = dict[str, np.ndarray]


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class ResponseCache:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, tuple[Raw, int]] = OrderedDict()
        self._bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(feeds: Mapping[str, np.ndarray], requested: list[str] | None, signature: str | None) -> bytes:
        digest = hashlib.blake2b(digest_size=20)
        digest.update(repr((signature, requested)).encode())
        for name, array in feeds.items():
            digest.update(repr((name, array.dtype.str, array.shape)).encode())
            if array.dtype.kind == "O":
                for item in array.ravel():
                    value = item if isinstance(item, bytes) else str(item).encode()
                    digest.update(len(value).to_bytes(8, "little"))
                    digest.update(value)
            else:
                digest.update(np.ascontiguousarray(array).data)
        return digest.digest()

    def get(self, key: bytes) -> Raw | None:
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry[0]

    def put(self, key: bytes, raw: Raw) -> None:
        frozen = {name: _frozen(array) for name, array in raw.items()}
        size = sum(a.nbytes for a in frozen.values())
        if size > self.max_bytes:
            return  # one answer larger than the whole cache: not worth evicting everything for
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[key] = (frozen, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted
            self.stats.evictions += 1


def _frozen(array: np.ndarray) -> np.ndarray:
    copy = np.array(array, copy=True)  # the runtime's buffer may be reused; a batch's slice pins the batch
    copy.flags.writeable = False
    return copy
