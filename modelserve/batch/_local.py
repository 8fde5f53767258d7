"""The local engine: stream the input, score each chunk in this process, write each part."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from modelserve.batch import BatchResult
from modelserve.batch._output import Output
from modelserve.batch._progress import Progress
from modelserve.batch._sources import check_input, chunks, total_rows
from modelserve.config.embedded import registry_url_from_env, repository_from_env
from modelserve.core.columns import ColumnMap, column_map, gather
from modelserve.core.loading import Loaded, load_version
from modelserve.core.refs import Target, resolve_ref
from modelserve.errors import InvalidInput, ModelServeError
from modelserve.protocol.v2 import rest
from modelserve.types import InferInput, InferRequest

ROW = "row"
SHOWN_ROWS = 10  # rejected row numbers a fail-mode error lists


@dataclass(frozen=True, slots=True)
class Job:
    ref: str | Path
    input: Path
    output: Path
    batch_size: int
    columns: list[str] | None
    key_column: str | None
    on_error: str
    rejects: Path | None
    resume: bool
    progress: bool
    version: int | None
    trust_code: bool
    repository: Path | None
    registry_url: str | None


def run(job: Job) -> BatchResult:
    started = time.perf_counter()
    check_input(job.input)
    target = resolve_ref(
        job.ref,
        version=job.version,
        repository=job.repository or repository_from_env(),
        registry_url=job.registry_url or registry_url_from_env(),
    )
    output = Output(job.output)
    done = output.open(_manifest(job, target), job.resume)
    loaded = load_version(
        target.path,
        target.label,
        target.config,
        trust_code=job.trust_code,
        decode_sample=lambda body: rest.decode_infer_request(body, None),
        checksums=target.checksums,
    )
    try:
        scorer = _Scorer(target, loaded, job)
        rows, rejected = output.counts() if done else (0, 0)
        with Progress(total_rows(job.input), rows + rejected, job.progress) as bar:
            for index, batch in enumerate(chunks(job.input, job.batch_size, done * job.batch_size), start=done):
                table, rejects = scorer.chunk(batch, index * job.batch_size)
                output.write(index, table, rejects)
                rows += table.num_rows
                rejected += 0 if rejects is None else rejects.num_rows
                bar.update(batch.num_rows)
    finally:
        loaded.runtime.unload()
    output.finish({"rows": rows, "rejected": rejected}, job.rejects)
    return BatchResult(rows, rejected, time.perf_counter() - started, done, job.output)


def _manifest(job: Job, target: Target) -> dict[str, Any]:
    stat = job.input.stat()
    return {
        "input": str(job.input.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "model": target.name,
        "version": target.version,
        "model_path": str(target.path.resolve()),
        "batch_size": job.batch_size,
        "columns": job.columns,
        "key_column": job.key_column,
        "on_error": job.on_error,
    }


class _Scorer:
    """Scores one chunk: its good rows in one call, the rows that fail set aside."""

    def __init__(self, target: Target, loaded: Loaded, job: Job) -> None:
        self._label = target.label
        self._loaded = loaded
        self._plan = next(iter(loaded.plans.values()))
        self._signature = loaded.signature
        self._job = job
        self._map: ColumnMap | None = None
        clash = job.key_column or ROW
        if any(spec.name == clash for spec in self._signature.outputs):
            raise ModelServeError(f"model {target.label} has an output named {clash!r}: choose another key column")

    def chunk(self, batch: Any, start: int) -> tuple[Any, Any | None]:
        """(scored rows as a table, rejected rows or None). Raises InvalidInput in fail mode."""
        if self._map is None:
            self._map = column_map(self._signature, batch.schema.names, self._job.columns, self._label)
            if self._job.key_column is not None and self._job.key_column not in batch.schema.names:
                raise InvalidInput(
                    f"key column {self._job.key_column!r} is not in the data; it has {batch.schema.names}"
                )
        errors = self._nulls(batch, self._map)
        good = np.arange(batch.num_rows)
        if errors:  # setdiff1d sorts and hashes the chunk: only worth paying when some rows are bad
            good = np.setdiff1d(good, np.fromiter(errors, dtype=np.int64, count=len(errors)))
        scored = batch if not errors else batch.take(pa.array(good))
        try:
            outputs = self._predict(scored, self._map)
        except (ModelServeError, ValueError, TypeError):
            good, outputs = self._one_by_one(batch, good, errors, self._map)
            scored = batch.take(pa.array(good, pa.int64()))
        if errors and self._job.on_error == "fail":
            raise InvalidInput(self._message(errors, start))
        return self._table(scored, good, start, outputs), self._rejects(batch, errors, start)

    def _predict(self, batch: Any, mapping: ColumnMap) -> dict[str, np.ndarray]:
        inputs = gather(self._signature, mapping, lambda c: batch.column(c).to_numpy(zero_copy_only=False))
        request = InferRequest([InferInput(s.name, s.datatype, inputs[s.name]) for s in self._signature.inputs])
        raw = self._loaded.runtime.predict(self._plan.inputs(request), None)
        return {out.name: out.data for out in self._plan.outputs(raw, None)}

    def _one_by_one(
        self, batch: Any, good: np.ndarray, errors: dict[int, str], mapping: ColumnMap
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        kept: list[int] = []
        parts: dict[str, list[np.ndarray]] = {}
        for i in good.tolist():
            try:
                row = self._predict(batch.slice(i, 1), mapping)
            except (ModelServeError, ValueError, TypeError) as exc:
                errors[i] = str(getattr(exc, "message", exc))
                continue
            kept.append(i)
            for name, data in row.items():
                parts.setdefault(name, []).append(data)
        if not kept:
            empty = self._predict(batch.slice(0, 0), mapping) if not errors else {}
            return np.array([], np.int64), empty
        return np.array(kept, np.int64), {name: np.concatenate(chunks) for name, chunks in parts.items()}

    @staticmethod
    def _nulls(batch: Any, mapping: ColumnMap) -> dict[int, str]:
        errors: dict[int, str] = {}
        for name in mapping.used:
            column = batch.column(name)
            if column.null_count:
                for i in np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False)).tolist():
                    errors.setdefault(i, f"column {name!r} is empty (null)")
        return errors

    def _table(self, scored: Any, good: np.ndarray, start: int, outputs: dict[str, np.ndarray]) -> Any:
        key = self._job.key_column
        columns: dict[str, Any] = {}
        if key is not None:
            columns[key] = scored.column(key)
        else:
            columns[ROW] = pa.array(good.astype(np.int64) + start)
        for spec in self._signature.outputs:
            data = outputs.get(spec.name)
            if data is None:  # every row of the chunk was rejected: an empty column of the right type
                data = np.empty((0, *[max(d, 1) for d in spec.shape[1:]]), dtype=_dtype(spec.datatype))
            columns[spec.name] = _arrow(data)
        return pa.table(columns)

    def _rejects(self, batch: Any, errors: dict[int, str], start: int) -> Any | None:
        if not errors:
            return None
        local = np.array(sorted(errors), np.int64)
        columns: dict[str, Any] = {ROW: pa.array(local + start)}
        if self._job.key_column is not None:
            columns[self._job.key_column] = batch.column(self._job.key_column).take(pa.array(local))
        columns["error"] = pa.array([errors[i] for i in local.tolist()], pa.string())
        return pa.table(columns)

    def _message(self, errors: dict[int, str], start: int) -> str:
        shown = sorted(errors)[:SHOWN_ROWS]
        lines = "; ".join(f"row {start + i}: {errors[i]}" for i in shown)
        more = f" (and {len(errors) - len(shown)} more in this chunk)" if len(errors) > len(shown) else ""
        return (
            f"{len(errors)} row(s) of the input fail for model {self._label}: {lines}{more}; "
            "--on-error skip sets them aside"
        )


def _dtype(datatype: str) -> np.dtype[Any]:
    from modelserve.types import DATATYPES

    return DATATYPES[datatype]


def _arrow(data: np.ndarray) -> Any:
    """A 1-D array as is, [N, k, ...] as a list column of the flattened trailing dimensions."""
    if data.dtype.kind == "O":
        values = pa.array(data.reshape(-1).tolist(), pa.binary())
    else:
        values = pa.array(np.ascontiguousarray(data).reshape(-1))
    if data.ndim == 1:
        return values
    width = int(np.prod(data.shape[1:]))
    offsets = pa.array(
        np.arange(0, data.shape[0] * width + 1, width, dtype=np.int32)
        if width
        else np.zeros(data.shape[0] + 1, np.int32)
    )
    return pa.ListArray.from_arrays(offsets, values)
