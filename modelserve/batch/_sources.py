"""Input files as a stream of Arrow record batches of exactly ``batch_size`` rows (the last may
be shorter), so that chunk i is always rows [i*batch_size, (i+1)*batch_size)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from modelserve.errors import ConfigError

FORMATS = (".parquet", ".csv", ".jsonl", ".json")


def check_input(path: Path) -> None:
    """Raises ConfigError unless ``path`` is a file of a known format."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"{path}: expected a .parquet, .csv or .jsonl file")


def total_rows(path: Path) -> int | None:
    """Rows in the file when its metadata says (Parquet), else None."""
    if path.suffix.lower() == ".parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def chunks(path: Path, batch_size: int, skip: int = 0) -> Iterator[Any]:
    """Record batches of ``batch_size`` rows from row ``skip`` on. Raises ConfigError when the file
    cannot be read."""
    try:
        yield from _rechunk(_batches(path, batch_size), batch_size, skip)
    except (pa.ArrowInvalid, ValueError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read it as {path.suffix[1:]}: {exc}") from None


def _batches(path: Path, batch_size: int) -> Iterator[Any]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size)
    elif suffix == ".csv":
        reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=16 << 20))
        yield from reader
    else:
        import pandas as pd

        with pd.read_json(path, lines=True, chunksize=batch_size) as reader:
            for frame in reader:
                yield _from_pandas(frame)


def _rechunk(batches: Iterator[Any], size: int, skip: int) -> Iterator[Any]:
    pending: list[Any] = []
    held = 0
    for batch in batches:
        if skip:
            dropped = min(skip, batch.num_rows)
            batch, skip = batch.slice(dropped), skip - dropped
            if not batch.num_rows:
                continue
        pending.append(batch)
        held += batch.num_rows
        while held >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size).combine_chunks().to_batches()[0]
            rest = table.slice(size)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _from_pandas(frame: Any) -> Any:
    try:
        return pa.RecordBatch.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # a column of mixed values (numbers and a stray string): keep it as text, so that only the
        # rows that do not convert are refused when the chunk is scored
        mixed = [c for c in frame.columns if frame[c].dtype == object]
        text = frame.astype({c: "string" for c in mixed})
        return pa.RecordBatch.from_pandas(text, preserve_index=False)
