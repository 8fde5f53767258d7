"""A model whose predictions were computed ahead of time (``modelserve precompute``) and are
looked up by key in a SQL table.

The version directory holds ``precomputed.yaml``::

    db: sqlite:////var/lib/modelserve/predictions.db   # or postgresql+psycopg://user:pw@host/db
    table: churn_scores
    fallback: none                                     # the only choice: see below

Signature: one input ``key`` (INT64 or BYTES, shape [-1], as the precompute job stored the keys),
and the outputs the live model had (read from the current generation at load), plus
``model_version`` (INT64 [-1], the version that computed each row) and ``computed_at`` (BYTES [-1],
ISO 8601 UTC). One request reads one generation in one SELECT, so its rows never mix versions.

A key with no row raises NotFound (404) naming it. Live-inference fallback is not offered: the
table stores outputs, not features, so a missing key has nothing to score (a client that holds
the features calls the live model itself). A later generation whose outputs differ from the
loaded signature fails requests until the version is reloaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelserve.config.model import ModelConfig
from modelserve.errors import LoadError, ModelServeError, NotFound, Unavailable
from modelserve.repository.precomputed import Generation, PrecomputedTable
from modelserve.types import DATATYPES, Signature, TensorSpec

KEY = "key"
SHOWN_KEYS = 5  # a 404 names at most this many missing keys


class PrecomputedRuntime:
    platform = "modelserve_precomputed"

    def __init__(self) -> None:
        self.model: Any = None
        self._table: PrecomputedTable | None = None
        self._generation: Generation | None = None

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        try:
            doc = yaml.safe_load(artifact.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise LoadError(f"{artifact}: cannot read it: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("db"), str) or not isinstance(doc.get("table"), str):
            raise LoadError(f"{artifact}: expected a mapping with 'db' (a database URL) and 'table' (a name)")
        fallback = doc.get("fallback", "none")
        if fallback not in ("none", None):
            raise LoadError(f"{artifact}: fallback {fallback!r}: only 'none' is offered (the table holds no features)")
        try:
            self._table = PrecomputedTable(doc["db"], doc["table"])
            self._generation = generation = self._table.current(fresh=True)
        except ModelServeError as exc:
            raise LoadError(f"{artifact}: {exc.message}") from exc
        self.model = self._table
        layout = generation.layout
        return Signature(
            inputs=(TensorSpec(KEY, layout.key_datatype, (-1,)),),
            outputs=(
                *(TensorSpec(o.name, o.datatype, o.shape) for o in layout.outputs),
                TensorSpec("model_version", "INT64", (-1,)),
                TensorSpec("computed_at", "BYTES", (-1,)),
            ),
        )

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        assert self._table is not None and self._generation is not None
        raw = inputs[KEY].reshape(-1)
        keys: list[int | str]
        if self._generation.layout.key_datatype == "INT64":
            keys = [int(k) for k in raw]
        else:
            keys = [k.decode() if isinstance(k, bytes) else str(k) for k in raw]
        generation, found = self._table.lookup(keys)
        if generation.layout.outputs != self._generation.layout.outputs:
            raise Unavailable(
                f"precomputed {self._table.where}: generation {generation.number} has other outputs than the "
                "version loaded; reload the version"
            )
        missing = [k for k in keys if k not in found]
        if missing:
            shown = ", ".join(repr(k) for k in missing[:SHOWN_KEYS]) + (" ..." if len(missing) > SHOWN_KEYS else "")
            raise NotFound(f"precomputed {self._table.where}: no row for key {shown} (generation {generation.number})")
        rows = [found[k] for k in keys]
        result: dict[str, np.ndarray] = {}
        for o in generation.layout.outputs:
            if outputs is not None and o.name not in outputs:
                continue
            values = [r.outputs[o.name] for r in rows]
            result[o.name] = np.array(values, dtype=object if o.datatype == "BYTES" else DATATYPES[o.datatype])
        result["model_version"] = np.array([r.version for r in rows], dtype=np.int64)
        result["computed_at"] = np.array([r.computed_at for r in rows], dtype=object)
        return result

    def unload(self) -> None:
        if self._table is not None:
            self._table.close()
        self._table = self.model = None
