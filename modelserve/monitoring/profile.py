"""The reference profile of one model version: what its training data looked like, as JSON.

A profile is built once from the model's input tensors over the training data (and, optionally,
its predictions on them) and stored by others beside the version. The drift detector compares live
windows against it and the outlier scorer measures live rows against it. Everything here is pure
numpy: no I/O, and no optional extra is needed to build, store or load a profile.

Features. A ``[N]`` tensor is one feature named after the tensor; a ``[N, k]`` tensor gives ``k``
features, named from ``feature_names[tensor]`` or ``"tensor[i]"``. A feature is *categorical* when
it is named in ``categorical`` (by feature or tensor name), when its dtype is BYTES, string or bool,
or when it is an integer with at most 20 distinct values; it is *numeric* otherwise. Categories are
kept as strings (bytes decoded as UTF-8), so that a live batch is compared by the same spelling.

Numeric features keep a seeded sample (for KS tests), quantile bin edges and the reference fraction
per bin (for PSI), mean and standard deviation. The numeric input features together keep the
Mahalanobis geometry of the training data (mean, regularised inverse covariance, quantiles of the
training rows' own distances) and a seeded sample of rows (the classifier two-sample test's
reference, and explanation backgrounds).

This module is over the usual 400 lines: the JSON schema, its validation and the extraction of
features from a live batch are one format, and splitting them would scatter that format.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from modelserve.errors import ConfigError

FORMAT = 1
# integers with at most this many distinct values in the training data are treated as categories
MAX_INTEGER_LEVELS = 20
# quantiles of the training rows' Mahalanobis distances kept for outlier thresholds
DISTANCE_QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.9995, 0.9999)
# ridge added to the correlation matrix before inversion: keeps collinear or constant features finite
_RIDGE = 1e-6

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True, slots=True)
class NumericSummary:
    """``edges`` are the interior bin edges (the outer bins run to -inf and +inf): ``len(edges) + 1``
    bins, bin ``i`` is ``[edges[i-1], edges[i])``; ``fractions`` are the training fractions per bin."""

    mean: float
    std: float
    sample: tuple[float, ...]
    edges: tuple[float, ...]
    fractions: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class CategoricalSummary:
    categories: tuple[str, ...]
    frequencies: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class FeatureProfile:
    """One feature: column ``column`` of tensor ``tensor`` (``None`` for a ``[N]`` tensor)."""

    name: str
    tensor: str
    column: int | None
    summary: NumericSummary | CategoricalSummary

    @property
    def kind(self) -> Kind:
        return "numeric" if isinstance(self.summary, NumericSummary) else "categorical"


@dataclass(frozen=True, slots=True)
class Multivariate:
    """The numeric input features jointly, in the order of :attr:`Profile.numeric_names`.

    ``precision`` is the regularised inverse covariance; ``quantiles`` pairs a quantile with the
    training rows' Mahalanobis distance at it; ``reference`` is a seeded sample of training rows.
    """

    mean: tuple[float, ...]
    precision: tuple[tuple[float, ...], ...]
    quantiles: tuple[tuple[float, float], ...]
    reference: tuple[tuple[float, ...], ...]


@dataclass(frozen=True, slots=True)
class _Tensor:
    """How to pull one tensor's features out of a batch (built once per profile). Column selections
    are slices where contiguous: a slice copy costs a fraction of a fancy-indexed one."""

    name: str
    width: int | None  # None: a [N] tensor
    src: slice | np.ndarray | None  # the tensor's numeric columns (None: none)...
    dst: slice | np.ndarray  # ...and where they go in the numeric matrix
    categorical: tuple[tuple[int, str], ...]  # (column, feature name)


@dataclass(frozen=True)
class Profile:
    """The reference profile of one model version; ``rows`` is the number of training rows.

    Build it with :func:`build_profile`; store it with :meth:`to_dict` and load it with
    :meth:`from_dict` (an exact round trip, also through JSON). Raises ConfigError when inconsistent.
    """

    rows: int
    inputs: tuple[FeatureProfile, ...]
    outputs: tuple[FeatureProfile, ...] = ()
    multivariate: Multivariate | None = None

    def __post_init__(self) -> None:
        _check_profile(self)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.inputs)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.tensor for f in self.inputs))

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.tensor for f in self.outputs))

    @property
    def numeric_names(self) -> tuple[str, ...]:
        """The numeric input features: the columns of :meth:`features`' matrix, in order."""
        return tuple(f.name for f in self.inputs if f.kind == "numeric")

    def features(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The input features of a live batch: a float64 ``[N, len(numeric_names)]`` matrix and each
        categorical feature's column of category strings. Raises ConfigError when a tensor the
        profile needs is missing or has the wrong shape; extra tensors are ignored."""
        return _extract(self._input_plan, inputs, "input")

    def numeric_features(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Only the numeric matrix of :meth:`features` (cheaper: no category strings are made)."""
        return _extract(self._input_plan, inputs, "input", numeric_only=True)[0]

    def output_features(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """As :meth:`features`, for the output features (in the order of ``outputs``)."""
        return _extract(self._output_plan, outputs, "output")

    @cached_property
    def _input_plan(self) -> tuple[tuple[_Tensor, ...], int, bool]:
        return _plan(self.inputs)

    @cached_property
    def _output_plan(self) -> tuple[tuple[_Tensor, ...], int, bool]:
        return _plan(self.outputs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able document (finite floats, lists, strings); :meth:`from_dict` reads it back."""
        mv = self.multivariate
        return {
            "format": FORMAT,
            "rows": self.rows,
            "inputs": [_feature_doc(f) for f in self.inputs],
            "outputs": [_feature_doc(f) for f in self.outputs],
            "multivariate": None
            if mv is None
            else {
                "mean": list(mv.mean),
                "precision": [list(r) for r in mv.precision],
                "quantiles": [list(q) for q in mv.quantiles],
                "reference": [list(r) for r in mv.reference],
            },
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Profile:
        """Parse a document written by :meth:`to_dict`. Raises ConfigError naming the bad field."""
        doc = _mapping(doc, "profile")
        if doc.get("format") != FORMAT:
            raise ConfigError(f"profile format: got {doc.get('format')!r}, expected {FORMAT}")
        mv = doc.get("multivariate")
        multivariate = None
        if mv is not None:
            mv = _mapping(mv, "profile multivariate")
            multivariate = Multivariate(
                mean=_floats(mv.get("mean"), "multivariate.mean"),
                precision=_matrix(mv.get("precision"), "multivariate.precision"),
                quantiles=tuple(_pair(q, "multivariate.quantiles") for q in _list(mv.get("quantiles"), "quantiles")),
                reference=_matrix(mv.get("reference"), "multivariate.reference"),
            )
        rows = doc.get("rows")
        if not isinstance(rows, int) or isinstance(rows, bool):
            raise ConfigError(f"profile rows: got {rows!r}, expected an integer")
        return cls(
            rows=rows,
            inputs=tuple(_parse_feature(f, "inputs") for f in _list(doc.get("inputs"), "inputs")),
            outputs=tuple(_parse_feature(f, "outputs") for f in _list(doc.get("outputs", []), "outputs")),
            multivariate=multivariate,
        )


def build_profile(
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray] | None = None,
    *,
    feature_names: Mapping[str, Sequence[str]] | None = None,
    categorical: Collection[str] = (),
    seed: int = 0,
    sample_rows: int = 2000,
    reference_rows: int = 500,
    bins: int = 10,
) -> Profile:
    """Profile the training data: ``inputs`` are the model's input tensors (rows on axis 0) and
    ``outputs`` its predictions on them. Deterministic for a given ``seed``. Raises ConfigError for
    inputs that are not tabular (rank > 2), non-numeric non-categorical or non-finite features,
    unequal row counts, or names in ``feature_names``/``categorical`` that match nothing."""
    if sample_rows < 1 or reference_rows < 1 or bins < 1:
        raise ConfigError(
            f"build_profile: sample_rows={sample_rows}, reference_rows={reference_rows}, bins={bins}; each must be >= 1"
        )
    names = dict(feature_names or {})
    tensors = {**inputs, **(outputs or {})}
    for key in names:
        if key not in tensors:
            raise ConfigError(f"feature_names names tensor {key!r}, which is not among {sorted(tensors)}")
    in_cols = _columns(inputs, names, "input")
    out_cols = _columns(outputs or {}, names, "output")
    known = set(tensors) | {name for name, _, _, _ in in_cols + out_cols}
    for name in categorical:
        if name not in known:
            raise ConfigError(f"categorical names {name!r}, which is neither a tensor nor a feature")
    rows = {len(values) for _, _, _, values in in_cols + out_cols}
    if len(rows) != 1:
        raise ConfigError(f"build_profile: tensors have different row counts {sorted(rows)}; expected one")
    (n,) = rows
    if n < 2:
        raise ConfigError(f"build_profile: got {n} training rows, expected at least 2")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, sample_rows), replace=False))
    reference = np.sort(rng.choice(n, size=min(n, reference_rows), replace=False))
    cats = set(categorical)

    def profile(cols: list[tuple[str, str, int | None, np.ndarray]]) -> tuple[FeatureProfile, ...]:
        return tuple(FeatureProfile(f, t, c, _summary(f, t, v, cats, sample, bins)) for f, t, c, v in cols)

    features, predictions = profile(in_cols), profile(out_cols)
    numeric = [v for (_, _, _, v), f in zip(in_cols, features, strict=True) if f.kind == "numeric"]
    mv = None if not numeric else _multivariate(np.column_stack(numeric).astype(np.float64), reference)
    return Profile(rows=n, inputs=features, outputs=predictions, multivariate=mv)


def mahalanobis(matrix: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each row of ``matrix`` ``[N, p]``; NaN for rows with NaN."""
    if len(matrix) == 1:  # the request path: 1-D products cost half as much
        d1 = matrix[0] - mean
        squared = np.array([d1 @ precision @ d1])
    else:
        d = matrix - mean
        squared = np.einsum("ij,ij->i", d @ precision, d)
    distances: np.ndarray = np.sqrt(np.maximum(squared, 0.0))
    return distances


def category_strings(values: np.ndarray) -> np.ndarray:
    """Category labels as a numpy string array: bytes decoded as UTF-8, everything else ``str()``."""
    if values.dtype.kind in "OS":
        return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values], dtype=str)
    return values.astype(str)


# -- building -----------------------------------------------------------------------------------


def _columns(
    tensors: Mapping[str, np.ndarray], names: Mapping[str, Sequence[str]], what: str
) -> list[tuple[str, str, int | None, np.ndarray]]:
    """(feature name, tensor, column, values) for every column of every tensor."""
    out: list[tuple[str, str, int | None, np.ndarray]] = []
    for tensor, raw in tensors.items():
        values = np.asarray(raw)
        given = names.get(tensor)
        if values.ndim == 1:
            if given is not None and len(given) != 1:
                raise ConfigError(f"feature_names[{tensor!r}] has {len(given)} names, expected 1 (a [N] tensor)")
            out.append((given[0] if given else tensor, tensor, None, values))
            continue
        if values.ndim != 2 or values.shape[1] == 0:
            shape = ", ".join(["N", *map(str, values.shape[1:])])
            raise ConfigError(
                f"{what} {tensor!r} has shape [{shape}]: drift monitoring supports tabular inputs, [N] or [N, k]"
            )
        k = values.shape[1]
        if given is not None and len(given) != k:
            raise ConfigError(f"feature_names[{tensor!r}] has {len(given)} names, expected {k} (the columns)")
        labels = list(given) if given is not None else [f"{tensor}[{i}]" for i in range(k)]
        out.extend((labels[i], tensor, i, values[:, i]) for i in range(k))
    return out


def _summary(
    name: str, tensor: str, values: np.ndarray, cats: set[str], sample: np.ndarray, bins: int
) -> NumericSummary | CategoricalSummary:
    kind = values.dtype.kind
    if (
        name in cats
        or tensor in cats
        or kind in "OSUb"
        or (kind in "iu" and len(np.unique(values)) <= MAX_INTEGER_LEVELS)
    ):
        labels, counts = np.unique(category_strings(values), return_counts=True)
        return CategoricalSummary(tuple(str(c) for c in labels), tuple(float(c) for c in counts / len(values)))
    if kind not in "iuf":
        raise ConfigError(f"feature {name!r} has dtype {values.dtype}: expected numbers, or name it in categorical")
    x = values.astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise ConfigError(f"feature {name!r} has {bad} non-finite values in the training data; impute them first")
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
    return NumericSummary(
        mean=float(x.mean()),
        std=float(x.std()),
        sample=tuple(x[sample].tolist()),
        edges=tuple(edges.tolist()),
        fractions=tuple((counts / len(x)).tolist()),
    )


def _multivariate(x: np.ndarray, reference: np.ndarray) -> Multivariate:
    """Mean, inverse covariance and distance quantiles. The covariance is inverted as a correlation
    matrix plus a small ridge, so that scale differences and constant features stay well posed."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    corr = np.atleast_2d(np.cov((x - mean) / scale, rowvar=False))
    inv = np.linalg.pinv(corr + _RIDGE * np.eye(len(corr)), hermitian=True)
    precision = inv / np.outer(scale, scale)
    precision = (precision + precision.T) / 2
    distances = mahalanobis(x, mean, precision)
    qs = np.quantile(distances, DISTANCE_QUANTILES)
    return Multivariate(
        mean=tuple(mean.tolist()),
        precision=tuple(tuple(r) for r in precision.tolist()),
        quantiles=tuple((q, float(v)) for q, v in zip(DISTANCE_QUANTILES, qs.tolist(), strict=True)),
        reference=tuple(tuple(r) for r in x[reference].tolist()),
    )


# -- live batches -------------------------------------------------------------------------------


def _plan(features: tuple[FeatureProfile, ...]) -> tuple[tuple[_Tensor, ...], int, bool]:
    """The extraction plan, the number of numeric features, and whether the features are simply all
    the columns of one tensor, in order (the common case, and a single copy)."""
    by_tensor: dict[str, list[tuple[int, FeatureProfile]]] = {}
    numeric = 0
    for f in features:
        by_tensor.setdefault(f.tensor, []).append((numeric if f.kind == "numeric" else -1, f))
        numeric += f.kind == "numeric"
    plan = []
    for tensor, cols in by_tensor.items():
        width = None if cols[0][1].column is None else len(cols)
        src = [f.column or 0 for d, f in cols if d >= 0]
        dst = [d for d, _ in cols if d >= 0]
        cats = tuple((f.column or 0, f.name) for d, f in cols if d < 0)
        plan.append(_Tensor(tensor, width, _slice(src) if src else None, _slice(dst), cats))
    plain = len(plan) == 1 and not plan[0].categorical
    return tuple(plan), numeric, plain


def _slice(index: list[int]) -> slice | np.ndarray:
    if index and index == list(range(index[0], index[0] + len(index))):
        return slice(index[0], index[0] + len(index))
    return np.array(index, dtype=np.intp)


def _extract(
    plan: tuple[tuple[_Tensor, ...], int, bool], arrays: Mapping[str, np.ndarray], what: str, numeric_only: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    tensors, numeric, plain = plan
    shaped = []
    for t in tensors:
        raw = arrays.get(t.name)
        if raw is None:
            needed = [p.name for p in tensors]
            raise ConfigError(f"{what} {t.name!r} is missing from the batch: the profile needs {needed}")
        values = np.asarray(raw)
        width = 1 if t.width is None else t.width
        if values.ndim == 1 and width == 1:
            values = values.reshape(-1, 1)
        if values.ndim != 2 or values.shape[1] != width:
            want = "[N]" if t.width is None else f"[N, {t.width}]"
            raise ConfigError(f"{what} {t.name!r} has shape {list(values.shape)}: the profile expects {want}")
        shaped.append(values)
    n = len(shaped[0])
    if len(shaped) > 1 and any(len(v) != n for v in shaped):
        raise ConfigError(f"{what} tensors have different row counts {[len(v) for v in shaped]}; expected one")
    if plain:
        return shaped[0].astype(np.float64), {}
    matrix = np.empty((n, numeric), dtype=np.float64)
    cats: dict[str, np.ndarray] = {}
    for t, values in zip(tensors, shaped, strict=True):
        if t.src is not None:
            matrix[:, t.dst] = values[:, t.src]
        for col, name in () if numeric_only else t.categorical:
            cats[name] = category_strings(values[:, col])
    return matrix, cats


# -- the document -------------------------------------------------------------------------------


def _feature_doc(f: FeatureProfile) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": f.name, "tensor": f.tensor, "column": f.column, "kind": f.kind}
    s = f.summary
    if isinstance(s, NumericSummary):
        doc |= {"mean": s.mean, "std": s.std, "sample": list(s.sample), "edges": list(s.edges)}
        doc["fractions"] = list(s.fractions)
    else:
        doc |= {"categories": list(s.categories), "frequencies": list(s.frequencies)}
    return doc


def _parse_feature(raw: object, where: str) -> FeatureProfile:
    doc = _mapping(raw, f"profile {where} entry")
    name, tensor, column = doc.get("name"), doc.get("tensor"), doc.get("column")
    if not isinstance(name, str) or not isinstance(tensor, str):
        raise ConfigError(f"profile {where}: name and tensor must be strings, got {name!r} and {tensor!r}")
    if column is not None and (not isinstance(column, int) or isinstance(column, bool) or column < 0):
        raise ConfigError(f"profile {where} {name!r}: column {column!r}, expected null or an integer >= 0")
    at = f"{where} {name!r}"
    summary: NumericSummary | CategoricalSummary
    if doc.get("kind") == "numeric":
        summary = NumericSummary(
            mean=_float(doc.get("mean"), f"{at} mean"),
            std=_float(doc.get("std"), f"{at} std"),
            sample=_floats(doc.get("sample"), f"{at} sample"),
            edges=_floats(doc.get("edges"), f"{at} edges"),
            fractions=_floats(doc.get("fractions"), f"{at} fractions"),
        )
    elif doc.get("kind") == "categorical":
        categories = _list(doc.get("categories"), f"{at} categories")
        if not all(isinstance(c, str) for c in categories):
            raise ConfigError(f"profile {at} categories: expected strings, got {categories!r}")
        summary = CategoricalSummary(tuple(categories), _floats(doc.get("frequencies"), f"{at} frequencies"))
    else:
        raise ConfigError(f"profile {at} kind: got {doc.get('kind')!r}, expected 'numeric' or 'categorical'")
    return FeatureProfile(name, tensor, column, summary)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: got {type(value).__name__}, expected an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"profile {where}: got {type(value).__name__}, expected a list")
    return list(value)


def _float(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ConfigError(f"profile {where}: got {value!r}, expected a finite number")
    return float(value)


def _floats(value: object, where: str) -> tuple[float, ...]:
    return tuple(_float(v, where) for v in _list(value, where))


def _matrix(value: object, where: str) -> tuple[tuple[float, ...], ...]:
    return tuple(_floats(row, where) for row in _list(value, where))


def _pair(value: object, where: str) -> tuple[float, float]:
    q = _floats(value, where)
    if len(q) != 2:
        raise ConfigError(f"profile {where}: got {value!r}, expected [quantile, distance]")
    return q[0], q[1]


# -- consistency --------------------------------------------------------------------------------


def _check_profile(p: Profile) -> None:
    if p.rows < 1 or not p.inputs:
        raise ConfigError(f"profile: got {p.rows} rows and {len(p.inputs)} input features, expected >= 1 of each")
    for where, features in (("inputs", p.inputs), ("outputs", p.outputs)):
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ConfigError(f"profile {where}: feature names repeat in {names}")
        _check_columns(where, features)
        for f in features:
            _check_summary(f, where)
    numeric = len(p.numeric_names)
    mv = p.multivariate
    if (mv is None) != (numeric == 0):
        raise ConfigError(f"profile multivariate: {numeric} numeric input features but multivariate is {mv!r:.20}")
    if mv is not None:
        if len(mv.mean) != numeric or len(mv.precision) != numeric or any(len(r) != numeric for r in mv.precision):
            raise ConfigError(f"profile multivariate: mean and precision must be {numeric} wide (the numeric features)")
        if not mv.reference or any(len(r) != numeric for r in mv.reference):
            raise ConfigError(f"profile multivariate.reference: expected rows of {numeric} values")
        qs = [q for q, _ in mv.quantiles]
        if not qs or qs != sorted(set(qs)) or not 0 < qs[0] <= qs[-1] < 1:
            raise ConfigError(f"profile multivariate.quantiles: got {qs}, expected increasing values in (0, 1)")


def _check_columns(where: str, features: Iterable[FeatureProfile]) -> None:
    columns: dict[str, list[int | None]] = {}
    for f in features:
        columns.setdefault(f.tensor, []).append(f.column)
    for tensor, cols in columns.items():
        if cols != [None] and sorted(c if c is not None else -1 for c in cols) != list(range(len(cols))):
            raise ConfigError(f"profile {where} tensor {tensor!r}: columns {cols}, expected [null] or 0..k-1")


def _check_summary(f: FeatureProfile, where: str) -> None:
    s = f.summary
    at = f"profile {where} {f.name!r}"
    if isinstance(s, NumericSummary):
        if not s.sample or len(s.fractions) != len(s.edges) + 1 or list(s.edges) != sorted(set(s.edges)):
            raise ConfigError(f"{at}: expected a sample, increasing edges and one more fraction than edges")
        freqs = s.fractions
    else:
        if not s.categories or len(s.categories) != len(s.frequencies) or len(set(s.categories)) != len(s.categories):
            raise ConfigError(f"{at}: expected distinct categories, one frequency each")
        freqs = s.frequencies
    if min(freqs) < 0 or abs(sum(freqs) - 1) > 1e-6:
        raise ConfigError(f"{at}: frequencies {list(freqs)[:5]}... must be >= 0 and sum to 1")
