"""Payload logging: what a model was asked and answered, written off the request path.

Entries (one JSON object per line: ``time``, ``request_id``, ``model``, ``version``, ``protocol``,
``inputs`` and ``outputs`` as ``{name: {datatype, shape, data}}``) go into a bounded queue that a
writer thread drains into ``payloads-<n>.jsonl`` files under the sink's directory, starting a new
file past ``max_file_bytes`` and deleting the oldest beyond ``keep_files``.

A request never waits for, or fails because of, the payload log: when the queue is full (the disk
is slow) an entry is dropped and counted; when writing fails (the disk is full, the directory is
gone) the entry is counted as failed and the error logged once per kind of failure. Memory is
bounded by ``queue_size`` entries. Serialising the tensors happens in the writer thread too.
"""

from __future__ import annotations

import base64
import logging
import queue
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

log = logging.getLogger(__name__)

FILE_PREFIX = "payloads-"
REDACTED = "[redacted]"


@dataclass(slots=True)
class PayloadCounts:
    written: int = 0
    dropped: int = 0  # the queue was full
    failed: int = 0  # writing raised


@dataclass(frozen=True, slots=True)
class Entry:
    at: float  # time.time()
    request_id: str | None
    model: str
    version: str
    protocol: str
    inputs: Sequence[tuple[str, str, np.ndarray]]  # (name, datatype, data)
    outputs: Sequence[tuple[str, str, np.ndarray]]
    redact: frozenset[str] = field(default_factory=frozenset)


class PayloadSink:
    def __init__(
        self, directory: Path, max_file_bytes: int = 64 << 20, keep_files: int = 10, queue_size: int = 10_000
    ) -> None:
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        self.keep_files = keep_files
        self.counts = PayloadCounts()
        self._queue: queue.Queue[Entry | None] = queue.Queue(maxsize=queue_size)
        self._failures_logged: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="modelserve-payload-log", daemon=True)
        self._thread.start()

    def put(self, entry: Entry) -> None:
        """Queue ``entry``; drop it (and count it) when the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.counts.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout`` s), then stop the writer."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        file: Any = None
        size = 0
        while True:
            entry = self._queue.get()
            if entry is None:
                break
            try:
                line = orjson.dumps(_document(entry)) + b"\n"
                if file is None or size + len(line) > self.max_file_bytes:
                    if file is not None:
                        file.close()
                    file, size = self._next_file()
                file.write(line)
                file.flush()
                size += len(line)
                self.counts.written += 1
            except Exception as exc:  # a full disk, a directory removed: count, say so once, go on
                self.counts.failed += 1
                file = None
                kind = type(exc).__name__
                if kind not in self._failures_logged:
                    self._failures_logged.add(kind)
                    log.error("payload log: cannot write to %s: %s; entries are counted as failed", self.directory, exc)
        if file is not None:
            file.close()

    def _next_file(self) -> tuple[Any, int]:
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = files(self.directory)
        number = int(existing[-1].stem.removeprefix(FILE_PREFIX)) + 1 if existing else 1
        for old in existing[: max(0, len(existing) + 1 - self.keep_files)]:
            old.unlink(missing_ok=True)
        path = self.directory / f"{FILE_PREFIX}{number:06d}.jsonl"
        return path.open("ab"), 0


def files(directory: Path) -> list[Path]:
    """The payload log's files, oldest first."""
    return sorted(p for p in directory.glob(f"{FILE_PREFIX}*.jsonl") if p.stem.removeprefix(FILE_PREFIX).isdigit())


def _document(entry: Entry) -> dict[str, Any]:
    return {
        "time": entry.at,
        "request_id": entry.request_id,
        "model": entry.model,
        "version": entry.version,
        "protocol": entry.protocol,
        "inputs": _tensors(entry.inputs, entry.redact),
        "outputs": _tensors(entry.outputs, frozenset()),
    }


def _tensors(tensors: Sequence[tuple[str, str, np.ndarray]], redact: frozenset[str]) -> dict[str, Any]:
    out = {}
    for name, datatype, data in tensors:
        if name in redact:
            out[name] = {"datatype": datatype, "shape": list(data.shape), "data": REDACTED}
        else:
            out[name] = {"datatype": datatype, "shape": list(data.shape), "data": _values(data)}
    return out


def _values(data: np.ndarray) -> Any:
    if data.dtype.kind == "O":  # BYTES: text when it is UTF-8, else base64
        return [_text(v) for v in data.ravel().tolist()]
    if data.dtype == np.float16:
        return data.astype(np.float32).ravel().tolist()
    return data.ravel().tolist()


def _text(value: object) -> str | dict[str, str]:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}
    return str(value)


def read(directory: Path, model: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
    """Entries from the payload log's files, oldest first, of ``model`` (None: all) at or after
    ``since`` (``time.time()`` seconds; None: all). A line being written is skipped."""
    found = []
    for path in files(directory):
        with path.open("rb") as file:
            for line in file:
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if (model is None or doc.get("model") == model) and (since is None or doc.get("time", 0) >= since):
                    found.append(doc)
    return found


def sampled(rate: float) -> bool:
    """Whether to log this request at ``rate`` (0..1)."""
    return rate >= 1.0 or (rate > 0.0 and random.random() < rate)
