"""Build a model version's reference profile from its training data (``modelserve monitor profile``).

The data is a table (a pandas DataFrame read from Parquet, CSV or JSON Lines). Its columns become
the model's inputs the way batch scoring maps them: a model with one 2-D input ``[N, k]`` takes
``columns`` (default: every column, in order; there must be k), and each column is a feature named
after it; a model with several inputs takes, for each input, the column of the same name. The
version is loaded in this process (as the server would: warmup included) and scores the rows, so
that the profile also holds the distribution of its outputs (prediction drift); of a larger table,
``predict_rows`` rows drawn at random make the profile.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelserve.config.model import ModelConfig
from modelserve.core import warmup
from modelserve.core.columns import column_map, gather
from modelserve.core.loading import load_version
from modelserve.errors import ConfigError
from modelserve.types import InferInput, InferRequest, Signature

if TYPE_CHECKING:
    from modelserve.monitoring.profile import Profile

PREDICT_ROWS = 20_000
BATCH_ROWS = 1000


def read_table(path: Path) -> Any:
    """A pandas DataFrame from ``.parquet``, ``.csv`` or ``.jsonl``/``.json`` (lines). Raises ConfigError."""
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("reading training data needs pandas: pip install 'modelserve[monitoring]'") from None
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True)
    except ImportError as exc:
        raise ConfigError(f"{path}: {exc}; pip install 'modelserve[monitoring]'") from None
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read it as {suffix[1:]}: {exc}") from None
    raise ConfigError(f"{path}: expected a .parquet, .csv or .jsonl file")


def profile_version(
    version_dir: Path,
    label: str,
    config: ModelConfig,
    table: Any,
    *,
    columns: Sequence[str] | None = None,
    categorical: Collection[str] = (),
    trust_code: bool = False,
    decode_sample: warmup.SampleDecoder | None = None,
    seed: int = 0,
    predict_rows: int = PREDICT_ROWS,
) -> Profile:
    """The reference profile of the version in ``version_dir`` over ``table``. Raises ConfigError,
    LoadError, InvalidInput (the data does not fit the model's signature)."""
    from modelserve.monitoring.profile import build_profile  # scipy and friends: the monitoring extra

    loaded = load_version(version_dir, label, config, trust_code=trust_code, decode_sample=decode_sample)
    try:
        inputs, names = table_inputs(loaded.signature, table, columns, label)
        rows = len(next(iter(inputs.values())))
        if rows > predict_rows:
            chosen = np.sort(np.random.default_rng(seed).choice(rows, size=predict_rows, replace=False))
            inputs = {name: values[chosen] for name, values in inputs.items()}
        outputs = predict_all(loaded, inputs)
    finally:
        loaded.runtime.unload()
    return build_profile(inputs, outputs, feature_names=names, categorical=categorical, seed=seed)


def table_inputs(
    signature: Signature, table: Any, columns: Sequence[str] | None, label: str
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """The model's inputs from a DataFrame's columns (core/columns.py's rule), and the column names
    of each stacked (2-D) input: its features' names. Raises InvalidInput."""
    names = [str(c) for c in table.columns]
    mapping = column_map(signature, names, columns, label)
    inputs = gather(signature, mapping, lambda name: table[name].to_numpy())
    return inputs, {name: mapping.sources[name] for name in mapping.stacked}


def predict_all(loaded: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The version's public outputs on every row, computed in batches of BATCH_ROWS."""
    rows = len(next(iter(inputs.values())))
    plan = next(iter(loaded.plans.values()))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, rows, BATCH_ROWS):
        request = InferRequest(
            [
                InferInput(spec.name, spec.datatype, inputs[spec.name][start : start + BATCH_ROWS])
                for spec in loaded.signature.inputs
            ]
        )
        raw = loaded.runtime.predict(plan.inputs(request), None)
        for output in plan.outputs(raw, None):
            parts.setdefault(output.name, []).append(output.data)
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}
