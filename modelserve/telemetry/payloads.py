"""Payload logging: what a model was asked and answered, written off the request path.

Entries (one JSON object each: ``time``, ``request_id``, ``model``, ``version``, ``protocol``,
``inputs`` and ``outputs`` as ``{name: {datatype, shape, data}}``) go into a bounded queue that a
writer thread drains in batches (up to ``batch_size`` entries) through a ``PayloadWriter``: by
default a ``FileWriter``, JSON Lines in ``payloads-<n>.jsonl`` files under the sink's directory,
starting a new file past ``max_file_bytes`` and deleting the oldest beyond ``keep_files``; or a
table in the registry database (``repository.registry.payloads.PayloadTable``), one transaction
per batch.

A request never waits for, or fails because of, the payload log: when the queue is full (the disk
or database is slow) an entry is dropped and counted; when writing fails (the disk is full, the
directory is gone, the database is down) the batch's entries are counted as failed and the error
logged once per kind of failure. Memory is bounded by ``queue_size`` entries. Serialising the
tensors happens in the writer thread too.
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
from typing import Any, Protocol

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
    """Entries in a bounded queue (``queue_size``), written by one thread in batches of up to
    ``batch_size`` through ``writer``, or, given a ``directory``, through a ``FileWriter`` with
    ``max_file_bytes`` and ``keep_files``. Give one of ``directory`` and ``writer``."""

    def __init__(
        self,
        directory: Path | None = None,
        max_file_bytes: int = 64 << 20,
        keep_files: int = 10,
        queue_size: int = 10_000,
        *,
        writer: PayloadWriter | None = None,
        batch_size: int = 500,
    ) -> None:
        if writer is None:
            if directory is None:
                raise ValueError("PayloadSink needs a directory or a writer")
            writer = FileWriter(directory, max_file_bytes, keep_files)
        elif directory is not None:
            raise ValueError("PayloadSink takes a directory or a writer, not both")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.writer = writer
        self.batch_size = batch_size
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
        running = True
        while running:
            batch, running = self._next_batch()
            docs = []
            for entry in batch:
                try:
                    docs.append(_document(entry))
                except Exception as exc:  # a tensor that will not serialise: this entry only
                    self._failed(1, exc)
            if not docs:
                continue
            try:
                self.writer.write(docs)
                self.counts.written += len(docs)
            except Exception as exc:  # a full disk, a directory removed, a database down: count, go on
                self._failed(len(docs), exc)
        try:
            self.writer.close()
        except Exception as exc:
            log.warning("payload log: closing %s: %s", self.writer.where, exc)

    def _next_batch(self) -> tuple[list[Entry], bool]:
        """What is queued, up to ``batch_size`` entries (waits for the first); False once closed."""
        first = self._queue.get()
        if first is None:
            return [], False
        batch = [first]
        while len(batch) < self.batch_size:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is None:
                return batch, False
            batch.append(entry)
        return batch, True

    def _failed(self, count: int, exc: Exception) -> None:
        """Count ``count`` entries as failed; log the error once per kind of failure."""
        self.counts.failed += count
        kind = type(exc).__name__
        if kind not in self._failures_logged:
            self._failures_logged.add(kind)
            log.error("payload log: cannot write to %s: %s; entries are counted as failed", self.writer.where, exc)


class PayloadWriter(Protocol):
    """Where the sink's writer thread puts entries: files (``FileWriter``), a database table
    (``repository.registry.payloads.PayloadTable``). Only that thread calls it."""

    @property
    def where(self) -> str:
        """What messages call it: a directory, a database URL (password hidden)."""
        ...

    def write(self, docs: list[dict[str, Any]]) -> None:
        """Store a batch of entries (``_document``'s shape, oldest first). May block; raising
        counts every entry of the batch as failed."""
        ...

    def close(self) -> None:
        """Release files or connections; called once, after the last ``write``."""
        ...


class FileWriter:
    """JSON Lines files ``payloads-<n>.jsonl`` in ``directory`` (created when first written):
    a new file past ``max_file_bytes``, the oldest deleted beyond ``keep_files``."""

    def __init__(self, directory: Path, max_file_bytes: int = 64 << 20, keep_files: int = 10) -> None:
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        self.keep_files = keep_files
        self._file: Any = None
        self._size = 0

    @property
    def where(self) -> str:
        return str(self.directory)

    def write(self, docs: list[dict[str, Any]]) -> None:
        try:
            for doc in docs:
                line = orjson.dumps(doc) + b"\n"
                if self._file is None or self._size + len(line) > self.max_file_bytes:
                    self.close()
                    self._file, self._size = self._next_file()
                self._file.write(line)
                self._size += len(line)
            self._file.flush()
        except BaseException:
            self._file = None  # start afresh: the directory may have been removed, the disk freed
            raise

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
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
        # microseconds, as a database timestamp keeps it: every sink gives back the same number
        "time": round(entry.at, 6),
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
