"""LightGBM boosters saved as text: ``model.txt`` (``Booster.save_model``, ``booster_.save_model``).

Signature: input ``input`` FP64 ``[-1, num_features]`` (FP32 accepted and widened losslessly).
Unlike the other tree runtimes the input is FP64: LightGBM compares features with float64
thresholds, so an FP32 declaration would round FP64 requests and could send a row down another
branch than ``Booster.predict`` on the same data. Outputs are FP64, as LightGBM returns them:

- ``binary``, ``multiclass``, ``multiclassova``: ``label`` INT64 ``[-1]`` (argmax) and
  ``probabilities`` FP64 ``[-1, n_classes]``; a binary model gets two columns ``[1 - p, p]`` as in
  scikit-learn (``LGBMClassifier.predict_proba``); ``multiclassova`` columns are LightGBM's
  per-class sigmoids, not normalised.
- regression, count, ``cross_entropy`` and ranking objectives: ``predictions`` FP64 ``[-1]``.

A model trained with a custom objective function saves no objective (its outputs are raw scores of
unknown meaning) and is refused, as is any objective not listed here. The objective is read from
the model file's header, which is what LightGBM itself uses to transform its predictions.

Corrupt files: LightGBM's loader trusts its input and can hang or crash the process on a damaged
file, so the text is checked before LightGBM sees it (see :func:`_read_model`) and loaded with
``Booster(model_str=...)``; LightGBM's own errors become LoadError
(``<file>: LightGBM cannot load it: <reason>``).

Threads: ``num_threads`` from ``config.threads`` is passed to every ``Booster.predict`` call (the
booster's saved training parameters, often 0 = every core, are not used). LightGBM applies it
through a process-wide OpenMP setting, so models with different ``threads`` in one server affect
each other's parallelism, never their results.

Thread safety: LightGBM does not document concurrent prediction on one Booster as safe, and it is
not: each call re-initialises shared prediction state on the booster (``GBDT::InitPredict`` writes
``num_iteration_for_pred_``; microsoft/LightGBM#6142, open), so ``predict`` holds a per-model lock.
Requests to one LightGBM model run one at a time, each with ``threads`` threads.

Feature names from the booster are kept in :attr:`LightGBMRuntime.feature_names` (LightGBM
invents ``Column_<i>`` when none were given): a TensorSpec has no place for them, so they are not
published in the model metadata. Inputs are positional; categorical features are sent as their
integer codes, as LightGBM needs for numpy input.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig
from modelserve.errors import LoadError
from modelserve.runtimes.base import missing_extra
from modelserve.types import Signature, TensorSpec

INPUT = "input"
LABEL = "label"
PROBABILITIES = "probabilities"
PREDICTIONS = "predictions"

_CLASSIFIERS = frozenset({"binary", "multiclass", "multiclassova"})
_REGRESSORS = frozenset(
    {
        "regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape", "gamma",
        "tweedie", "cross_entropy", "cross_entropy_lambda", "lambdarank", "rank_xendcg",
    }
)  # fmt: skip


# sections after the header, (opening, closing): LightGBM reads an unclosed one past the end of the file
_SECTIONS = (
    ("\nTree=", "\nend of trees"),
    ("\nparameters:", "\nend of parameters"),
    ("\nparser:", "\nend of parser"),
)
_PARAMETER = re.compile(r"\[[^:\]]+: .*\]\s*$")  # "[num_leaves: 31]"
_BLANK_LINE = re.compile(r"\n\s*\n")
# header integers LightGBM divides or indexes by, with their least valid value
_HEADER_INTS = {"num_class": 1, "num_tree_per_iteration": 1, "max_feature_idx": 0, "label_index": 0}


class LightGBMRuntime:
    platform = "lightgbm"

    def __init__(self) -> None:
        self.model: Any = None
        self.objective = ""
        self.feature_names: tuple[str, ...] = ()
        self._classes = 0  # 0 for a regressor; 2 for binary
        self._threads = 1
        self._lock = threading.Lock()

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        try:
            import lightgbm as lgb
        except ImportError:
            raise missing_extra("lightgbm", "lightgbm") from None
        text, self.objective = _read_model(artifact)
        try:
            booster = lgb.Booster(model_str=text)
        except (lgb.basic.LightGBMError, ValueError) as exc:  # ValueError: its saved parameters are not JSON
            raise LoadError(f"{artifact.name}: LightGBM cannot load it: {exc}") from None
        if booster.num_trees() == 0:
            raise LoadError(f"{artifact.name}: the LightGBM model has no trees (is the file truncated?)")
        if self.objective in _CLASSIFIERS:
            self._classes = max(booster.num_model_per_iteration(), 2)
        elif self.objective not in _REGRESSORS:
            what = f"objective {self.objective!r}" if self.objective else "no objective (a custom objective function?)"
            raise LoadError(
                f"{artifact.name}: the LightGBM model has {what}, which modelserve cannot serve; "
                f"expected one of {sorted(_CLASSIFIERS | _REGRESSORS)}"
            )
        self._threads = config.threads
        self.feature_names = tuple(booster.feature_name())
        self.model = booster
        return self._signature(booster.num_feature())

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        x = inputs[INPUT]
        if x.shape[0] == 0:  # LightGBM cannot reshape an empty multiclass result; answer with empty outputs
            raw = np.zeros((0,) if self._classes <= 2 else (0, self._classes), dtype=np.float64)
        else:
            with self._lock:
                raw = self.model.predict(x, num_threads=self._threads)
        if not self._classes:
            return {PREDICTIONS: raw}
        probabilities = np.column_stack([1 - raw, raw]) if raw.ndim == 1 else raw
        return {LABEL: probabilities.argmax(axis=1).astype(np.int64), PROBABILITIES: probabilities}

    def native_model(self) -> Any:
        """A private copy of the Booster, for explainers (shap's TreeExplainer asks it for
        contributions): the serving one must not be called outside the lock (see Thread safety
        above). Blocks while it copies (a text round trip)."""
        import lightgbm as lgb

        with self._lock:
            text = self.model.model_to_string()
        return lgb.Booster(model_str=text)

    def unload(self) -> None:
        self.model = None

    def _signature(self, n_features: int) -> Signature:
        inputs = (TensorSpec(INPUT, "FP64", (-1, n_features), accepts=frozenset({"FP32"})),)
        if not self._classes:
            return Signature(inputs=inputs, outputs=(TensorSpec(PREDICTIONS, "FP64", (-1,)),))
        outputs = (TensorSpec(LABEL, "INT64", (-1,)), TensorSpec(PROBABILITIES, "FP64", (-1, self._classes)))
        return Signature(inputs=inputs, outputs=outputs)


def _read_model(artifact: Path) -> tuple[str, str]:
    """The model's text for ``Booster(model_str=...)``, and the objective its header names ("" if none).

    LightGBM's loader trusts its input (``GBDT::LoadModelFromString``, ``Tree::Tree``): it loops
    forever on a NUL byte, divides by header counts, reads an unclosed section past the end of the
    file, follows child links and feature indices without bounds checks, and, when the header has
    ``tree_sizes``, parses the trees in parallel at those offsets, where a malformed tree aborts
    the process instead of raising. So the text is checked here first, and ``tree_sizes`` (only an
    index for parallel parsing) is dropped: LightGBM then parses the trees one after another and
    reports a bad one as an error.
    """
    name = artifact.name
    try:
        text = artifact.read_bytes().decode("utf-8")
    except OSError as exc:
        raise LoadError(f"{name}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LoadError(f"{name}: not a LightGBM text model: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if text.partition("\n")[0].strip() != "tree":
        raise LoadError(f"{name}: not a LightGBM text model: its first line is not 'tree'")
    if "\0" in text:
        raise LoadError(f"{name}: not a LightGBM text model: it contains NUL characters")
    header, tree, rest = text.partition("\nTree=")
    body = tree + rest  # "" when there are no trees
    fields = _fields(header)
    for key, least in _HEADER_INTS.items():
        if key in fields and not (fields[key].isdigit() and int(fields[key]) >= least):
            raise LoadError(f"{name}: the LightGBM header has {key}={fields[key]!r}; expected an integer >= {least}")
    _check_sections(name, body)
    if "max_feature_idx" in fields:  # else LightGBM refuses the header before it reads a tree
        _check_trees(name, body, int(fields["max_feature_idx"]) + 1)
    lines = header.splitlines(keepends=True)
    header = "".join(line for line in lines if not line.startswith("tree_sizes="))
    objective = fields.get("objective", "").split()
    return header + body, (objective[0] if objective else "")


def _fields(block: str) -> dict[str, str]:
    return {key: value.strip() for key, _, value in (line.partition("=") for line in block.splitlines())}


def _check_sections(name: str, body: str) -> None:
    for opening, closing in _SECTIONS:
        at = body.find(opening)
        if at >= 0 and body.find(closing, at) < 0:
            raise LoadError(f"{name}: the LightGBM model's {opening.strip()!r} section has no end (truncated?)")
    parameters = body.partition("\nparameters:")[2].partition("\nend of parameters")[0]
    bad = next((line for line in parameters.splitlines() if line.strip() and not _PARAMETER.match(line)), None)
    if bad is not None:
        raise LoadError(f"{name}: the LightGBM model has a malformed parameter line {bad[:80]!r}")


def _check_trees(name: str, body: str, n_features: int) -> None:
    for number, block in enumerate(body.split("\nTree=")[1:]):
        try:
            _check_tree(_fields(_BLANK_LINE.split(block, maxsplit=1)[0]), n_features)
        except (KeyError, ValueError, IndexError, OverflowError) as exc:
            raise LoadError(f"{name}: tree {number} of the LightGBM model is malformed: {exc}") from None


def _check_tree(tree: dict[str, str], n_features: int) -> None:
    """Links go to a later node or to a leaf, so every walk ends; indices stay in their arrays."""
    n_leaves = int(tree["num_leaves"])
    if tree.get("is_linear") == "1":  # each leaf's linear model reads features by index
        counts = _ints(tree, "num_features", n_leaves)
        features = [int(f) for f in tree["leaf_features"].split()]
        if len(features) != sum(counts) or any(not 0 <= f < n_features for f in features):
            raise ValueError(f"leaf_features do not match num_features or are outside [0, {n_features})")
    if n_leaves <= 1:
        return
    nodes = n_leaves - 1
    if any(not 0 <= f < n_features for f in _ints(tree, "split_feature", nodes)):
        raise ValueError(f"a split_feature is outside [0, {n_features})")
    for side in ("left_child", "right_child"):
        for node, child in enumerate(_ints(tree, side, nodes)):
            if not (node < child < nodes if child >= 0 else ~child < n_leaves):
                raise ValueError(f"{side} of node {node} is {child}: neither a later node nor a leaf")
    n_cat = int(tree.get("num_cat", "0"))
    categorical = [node for node, kind in enumerate(_ints(tree, "decision_type", nodes)) if kind & 1]
    if categorical:
        bounds = _ints(tree, "cat_boundaries", n_cat + 1)
        if bounds[0] != 0 or bounds != sorted(bounds) or bounds[-1] != len(tree["cat_threshold"].split()):
            raise ValueError("cat_boundaries do not delimit cat_threshold")
        thresholds = tree["threshold"].split()
        if any(not 0 <= int(float(thresholds[node])) < n_cat for node in categorical):
            raise ValueError(f"a categorical threshold is outside [0, {n_cat})")


def _ints(tree: dict[str, str], key: str, count: int) -> list[int]:
    values = [int(v) for v in tree[key].split()]
    if len(values) != count:
        raise ValueError(f"{key} has {len(values)} values, expected {count}")
    return values
