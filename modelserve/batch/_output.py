"""The output dataset directory: its manifest, its parts (written whole or not at all), the
rejects, and the success marker. See the package docstring for the layout."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from modelserve.errors import ConfigError

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
REJECTS_DIR = "_rejects"


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


class Output:
    """One job's output directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, manifest: dict[str, Any], resume: bool) -> int:
        """Prepare the directory for the job ``manifest`` describes; returns the chunks already done
        (0 unless resuming the same job). Raises ConfigError for another job's output."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"output {self.root} exists and is not a directory (the output is a Parquet dataset)")
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".part-*.tmp"):
            stale.unlink()  # a part an interrupted run did not finish
        (self.root / REJECTS_DIR).mkdir(exist_ok=True)
        for stale in (self.root / REJECTS_DIR).glob(".part-*.tmp"):
            stale.unlink()
        path = self.root / MANIFEST
        if resume and path.is_file():
            previous = json.loads(path.read_text())
            changed = sorted(k for k in manifest.keys() | previous.keys() if manifest.get(k) != previous.get(k))
            if changed:
                raise ConfigError(
                    f"output {self.root} holds another job's results (it differs in {changed}); "
                    "choose another output, or start over with --no-resume"
                )
            return self._done()
        self._clear()
        _write_atomic(path, json.dumps(manifest, indent=2).encode())
        return 0

    def write(self, index: int, table: Any, rejects: Any | None) -> None:
        """Chunk ``index``: its rejects first, then its part, whose existence marks the chunk done."""
        if rejects is not None and rejects.num_rows:
            _write_table(self.root / REJECTS_DIR / part_name(index), rejects)
        _write_table(self.root / part_name(index), table)

    def finish(self, summary: dict[str, Any], rejects_file: Path | None) -> None:
        if rejects_file is not None:
            parts = sorted((self.root / REJECTS_DIR).glob("part-*.parquet"))
            tables = [pq.read_table(p) for p in parts]
            table = pa.concat_tables(tables) if tables else _empty_rejects()
            _write_table(rejects_file, table)
        _write_atomic(self.root / SUCCESS, json.dumps(summary).encode())

    def counts(self) -> tuple[int, int]:
        """(rows, rejected) in the parts written so far."""
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in self.root.glob("part-*.parquet"))
        rejected = sum(pq.ParquetFile(p).metadata.num_rows for p in (self.root / REJECTS_DIR).glob("part-*.parquet"))
        return int(rows), int(rejected)

    def _done(self) -> int:
        index = 0
        while (self.root / part_name(index)).is_file():
            index += 1
        # parts after a gap cannot exist (chunks are written in order), but a copy could hold some
        for orphan in self.root.glob("part-*.parquet"):
            if int(orphan.name[5:10]) >= index:
                orphan.unlink()
        return index

    def _clear(self) -> None:
        for name in (MANIFEST, SUCCESS):
            (self.root / name).unlink(missing_ok=True)
        for part in [*self.root.glob("part-*.parquet"), *(self.root / REJECTS_DIR).glob("part-*.parquet")]:
            part.unlink()


def _empty_rejects() -> Any:
    return pa.table({"row": pa.array([], pa.int64()), "error": pa.array([], pa.string())})


def _write_table(path: Path, table: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    # no dictionary encoding: predictions and keys are mostly distinct values, for which trying it
    # tripled the time of writing a part (and made it larger) on the benchmark's data
    pq.write_table(table, tmp, use_dictionary=False)
    _fsync_rename(tmp, path)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    _fsync_rename(tmp, path)


def _fsync_rename(tmp: Path, path: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)
