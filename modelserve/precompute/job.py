"""Score every row of a table with one model version and store the outputs by key as a new
generation of a precomputed table (repository/precomputed.py), then switch lookups to it.

The version is loaded in this process as the server would load it (warmup included). The table's
columns map to the model's inputs as ``monitor profile`` maps them (monitoring/profiling.py),
except that the key column is never a feature. Rows are scored and written ``batch_rows`` at a
time, each batch in its own transaction; duplicate keys keep their last row. A failure drops the
unfinished generation and leaves the current one serving.

Refresh: :func:`every` reruns a job on an interval; :func:`watch_production` reruns it when the
registry's production version of the model changes. Both block until ``stop`` is set.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig
from modelserve.core import warmup
from modelserve.core.loading import load_version
from modelserve.errors import ConfigError, InvalidInput
from modelserve.monitoring.profiling import predict_all, table_inputs
from modelserve.repository.precomputed import Layout, OutputLayout, PrecomputedTable, encode_outputs

log = logging.getLogger(__name__)

BATCH_ROWS = 5000
RESERVED_OUTPUTS = ("model_version", "computed_at")  # the precomputed runtime adds these


@dataclass(frozen=True, slots=True)
class Result:
    generation: int
    rows: int
    seconds: float


def precompute(
    version_dir: Path,
    model: str,
    version: int,
    config: ModelConfig,
    data: Any,
    key_column: str,
    target: PrecomputedTable,
    *,
    columns: Sequence[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    trust_code: bool = False,
    decode_sample: warmup.SampleDecoder | None = None,
) -> Result:
    """Score ``data`` (a pandas DataFrame) with ``version_dir`` and switch ``target`` to the new
    generation. Raises ConfigError, LoadError, InvalidInput, Unavailable (the database)."""
    started = time.perf_counter()
    if key_column not in data.columns:
        raise InvalidInput(f"key column {key_column!r} is not in the data; it has {[str(c) for c in data.columns]}")
    data = data.drop_duplicates(subset=[key_column], keep="last")
    keys = data[key_column]
    key_datatype = "INT64" if keys.dtype.kind in "iu" else "BYTES"
    features = data.drop(columns=[key_column])
    label = f"{model!r} version {version}"
    loaded = load_version(version_dir, label, config, trust_code=trust_code, decode_sample=decode_sample)
    try:
        clash = [s.name for s in loaded.signature.outputs if s.name in RESERVED_OUTPUTS]
        if clash:
            raise InvalidInput(f"model {label} has outputs named {clash}: the precomputed runtime reserves them")
        inputs, _ = table_inputs(loaded.signature, features, columns, label)
        layout = Layout(
            key_datatype, tuple(OutputLayout(s.name, s.datatype, s.shape) for s in loaded.signature.outputs)
        )
        number = target.begin_generation(model, version, layout)
        try:
            written = 0
            key_values = keys.to_numpy()
            for start in range(0, len(data), batch_rows):
                chunk = {name: values[start : start + batch_rows] for name, values in inputs.items()}
                outputs = predict_all(loaded, chunk)
                rows = _rows(key_values[start : start + batch_rows], key_datatype, outputs)
                written += target.write(number, key_datatype, model, version, rows)
            target.switch(number)
        except BaseException:
            target.abandon(number)
            raise
    finally:
        loaded.runtime.unload()
    seconds = time.perf_counter() - started
    log.info("precomputed %d rows of %s into %s generation %d in %.1f s", written, label, target.where, number, seconds)
    return Result(number, written, seconds)


def _rows(keys: np.ndarray, key_datatype: str, outputs: dict[str, np.ndarray]) -> list[tuple[Any, str]]:
    columns = {name: _jsonable(values) for name, values in outputs.items()}
    typed = [int(k) for k in keys] if key_datatype == "INT64" else [str(k) for k in keys]
    return [(key, encode_outputs({name: col[i] for name, col in columns.items()})) for i, key in enumerate(typed)]


def _jsonable(values: np.ndarray) -> list[Any]:
    if values.dtype.kind in "OSU":
        return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[object])(values).tolist()  # type: ignore[no-any-return]
    return values.tolist()  # type: ignore[no-any-return]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``1h``, ``1d`` (or plain seconds). Raises ConfigError."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if found is None or float(found.group(1)) <= 0:
        raise ConfigError(f"interval {text!r}: expected a positive number with s, m, h or d, e.g. 1h")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def every(interval_s: float, job: Callable[[], object], stop: threading.Event) -> None:
    """Run ``job`` now and then every ``interval_s`` (from start to start) until ``stop`` is set.
    A failed run is logged and retried at the next tick."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            job()
        except Exception:
            log.exception("precompute failed; retrying in %.0f s", interval_s)
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))


def watch_production(
    production: Callable[[], int | None],
    job: Callable[[int], object],
    stop: threading.Event,
    *,
    poll_s: float = 10.0,
    last: int | None = None,
) -> None:
    """Poll ``production()`` (the model's production version, or None) every ``poll_s`` and run
    ``job(version)`` whenever it changes from ``last``. A failed run is retried at the next poll."""
    while not stop.is_set():
        try:
            current = production()
            if current is not None and current != last:
                log.info("production version is now %d: precomputing", current)
                job(current)
                last = current
        except Exception:
            log.exception("precompute on promotion failed; retrying in %.0f s", poll_s)
        stop.wait(poll_s)
