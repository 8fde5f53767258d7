"""Columns of a table become a model's inputs, the same way everywhere a table meets a model
(embedded ``predict(DataFrame)``, batch scoring, ``monitor profile``).

A model with one 2-D input ``[N, k]`` takes ``columns`` (default: every column, in order; there
must be k of them), stacked side by side. A model with several inputs (or one 1-D input) takes,
for each input, the column of the same name, which fills ``[N]``. Values are cast to the input's
datatype, the way a JSON client's numbers take the datatype it declares.

The table is given as its column names and a function that returns one column as a numpy array,
so that pandas DataFrames and Arrow record batches share the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from modelserve.errors import InvalidInput
from modelserve.types import DATATYPES, Signature


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Which columns feed which input: ``{input: [columns]}``; ``stacked`` inputs take several."""

    sources: dict[str, list[str]]
    stacked: frozenset[str]

    @property
    def used(self) -> list[str]:
        """Every column read, in input order."""
        return [c for cols in self.sources.values() for c in cols]


def column_map(signature: Signature, available: Sequence[str], columns: Sequence[str] | None, label: str) -> ColumnMap:
    """The columns each input of ``signature`` reads. Raises InvalidInput naming what is missing."""
    specs = signature.inputs
    if len(specs) == 1 and len(specs[0].shape) == 2:
        spec = specs[0]
        chosen = list(columns) if columns else list(available)
        missing = [c for c in chosen if c not in available]
        if missing:
            raise InvalidInput(f"columns {missing} are not in the data; it has {list(available)}")
        width = spec.shape[1]
        if width != -1 and width != len(chosen):
            raise InvalidInput(
                f"model {label} input {spec.name!r} takes {width} columns, the data gives {len(chosen)}: "
                "choose them with --columns"
            )
        return ColumnMap({spec.name: chosen}, frozenset({spec.name}))
    sources = {}
    for spec in specs:
        if spec.name not in available:
            raise InvalidInput(
                f"model {label} has inputs {[s.name for s in specs]}: each must be a column of the data, "
                f"and {spec.name!r} is not"
            )
        if len(spec.shape) != 1:
            raise InvalidInput(f"model {label} input {spec.name!r} has shape {list(spec.shape)}: a column fills [N]")
        sources[spec.name] = [spec.name]
    return ColumnMap(sources, frozenset())


def gather(signature: Signature, mapping: ColumnMap, column: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """``{input: array}`` cast to each input's datatype. Raises ValueError/TypeError when a value
    does not convert (a string in a numeric column, say)."""
    inputs = {}
    for spec in signature.inputs:
        dtype = DATATYPES[spec.datatype]
        names = mapping.sources[spec.name]
        if spec.name in mapping.stacked:
            parts = [column(name) for name in names]
            data = np.empty((len(parts[0]) if parts else 0, len(parts)), dtype=dtype)
            for i, part in enumerate(parts):
                data[:, i] = part
            inputs[spec.name] = data
        else:
            inputs[spec.name] = np.asarray(column(names[0])).astype(dtype, copy=False)
    return inputs
