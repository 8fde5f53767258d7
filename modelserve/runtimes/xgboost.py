"""XGBoost boosters saved natively: ``*.ubj`` (UBJSON) or ``model.json``.

Models saved by the scikit-learn wrappers (``XGBClassifier(...).save_model("model.ubj")``) are
plain boosters on disk and load the same way; what they serve is decided by the booster's own
objective (``save_config()``), not by the wrapper class.

Signature: input ``input`` FP32 ``[-1, num_features]`` (FP64 accepted: XGBoost itself reduces
features to float32, so the cast changes nothing). Outputs, by objective:

- ``binary:logistic``, ``multi:softprob``: ``label`` INT64 ``[-1]`` (argmax) and ``probabilities``
  FP32 ``[-1, n_classes]``; a binary model gets two columns ``[1 - p, p]`` as in scikit-learn.
- ``multi:softmax``, ``binary:hinge``: ``label`` INT64 ``[-1]`` (the booster predicts the class).
- regression, counts, survival and ranking objectives: ``predictions`` FP32 ``[-1]``, or
  ``[-1, n_targets]`` for multi-target and multi-quantile models.

Outputs are FP32 because XGBoost predicts in float32; they equal ``Booster.predict`` bit for bit.
Every tree is used, as ``Booster.predict`` does by default (``best_iteration`` is not applied).

Threads: ``nthread`` is set on the booster from ``config.threads``. Thread safety: XGBoost
documents prediction as thread-safe since 1.4 for the tree boosters ``gbtree`` and ``dart``
(https://xgboost.readthedocs.io/en/stable/prediction.html#thread-safety), so ``predict`` takes no
lock; ``gblinear`` is refused (no such guarantee, and no in-place prediction).

Feature names saved with the booster are kept in :attr:`XGBoostRuntime.feature_names`: a runtime
returns only a :class:`~modelserve.types.Signature`, and a TensorSpec has no place for column
names, so they are not published in the model metadata (name them under ``metadata:`` in
config.yaml). Inputs are positional; names are not checked.
"""

from __future__ import annotations

import json
import re
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

_PROBABILITY_OBJECTIVES = frozenset({"binary:logistic", "multi:softprob"})
_LABEL_OBJECTIVES = frozenset({"multi:softmax", "binary:hinge"})
_VALUE_OBJECTIVES = frozenset(
    {
        "reg:squarederror", "reg:squaredlogerror", "reg:logistic", "reg:pseudohubererror",
        "reg:absoluteerror", "reg:quantileerror", "reg:gamma", "reg:tweedie", "count:poisson",
        "survival:cox", "survival:aft", "binary:logitraw", "rank:ndcg", "rank:map", "rank:pairwise",
    }
)  # fmt: skip
_TREE_BOOSTERS = frozenset({"gbtree", "dart"})
_LOG_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")  # "[01:22:50] /src/c_api.cc:1532: "


class XGBoostRuntime:
    platform = "xgboost"

    def __init__(self) -> None:
        self.model: Any = None
        self.objective = ""
        self.feature_names: tuple[str, ...] | None = None
        self._kind = ""  # "probabilities" | "label" | "values"
        self._columns = 1  # columns of the booster's strict-shape prediction

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        try:
            import xgboost as xgb
        except ImportError:
            raise missing_extra("xgboost", "xgboost") from None
        try:
            booster = xgb.Booster(model_file=artifact)
            booster.set_param({"nthread": config.threads})
            learner = json.loads(booster.save_config())["learner"]
        except xgb.core.XGBoostError as exc:
            raise LoadError(f"{artifact.name}: XGBoost cannot load it: {_reason(str(exc))}") from None
        except UnicodeDecodeError as exc:  # XGBoost's message quotes the file's bytes, which are not UTF-8
            message = exc.object.decode("utf-8", "replace") if isinstance(exc.object, bytes) else str(exc)
            raise LoadError(f"{artifact.name}: XGBoost cannot load it: {_reason(message)}") from None
        self._configure(artifact.name, learner)
        self.feature_names = tuple(booster.feature_names) if booster.feature_names else None
        self.model = booster
        return self._signature(booster.num_features())

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        x = inputs[INPUT]
        if x.shape[0] == 0:  # XGBoost drops the class axis of an empty batch; keep the signature's shape
            raw = np.zeros((0, self._columns), dtype=np.float32)
        else:
            raw = self.model.inplace_predict(x, strict_shape=True)  # [rows, groups or targets]
        if self._kind == "values":
            return {PREDICTIONS: raw[:, 0] if self._columns == 1 else raw}
        if self._kind == "label":
            return {LABEL: raw[:, 0].astype(np.int64)}
        probabilities = np.column_stack([1 - raw[:, 0], raw[:, 0]]) if self._columns == 1 else raw
        return {LABEL: probabilities.argmax(axis=1).astype(np.int64), PROBABILITIES: probabilities}

    def unload(self) -> None:
        self.model = None

    def _configure(self, name: str, learner: Mapping[str, Any]) -> None:
        booster = learner["gradient_booster"]["name"]
        if booster not in _TREE_BOOSTERS:
            raise LoadError(
                f"{name}: XGBoost booster {booster!r} is not supported; expected one of {sorted(_TREE_BOOSTERS)} "
                "(XGBoost guarantees thread-safe prediction only for tree boosters)"
            )
        self.objective = str(learner["objective"]["name"])
        params = learner["learner_model_param"]
        n_classes, n_targets = int(params.get("num_class", 0)), int(params.get("num_target", 1))
        if self.objective in _VALUE_OBJECTIVES:
            self._kind, self._columns = "values", max(n_targets, 1)
        elif self.objective in _PROBABILITY_OBJECTIVES | _LABEL_OBJECTIVES and n_targets <= 1:
            self._kind = "probabilities" if self.objective in _PROBABILITY_OBJECTIVES else "label"
            self._columns = n_classes if self.objective == "multi:softprob" else 1
        else:
            supported = sorted(_PROBABILITY_OBJECTIVES | _LABEL_OBJECTIVES | _VALUE_OBJECTIVES)
            targets = f" with {n_targets} targets" if n_targets > 1 else ""
            raise LoadError(
                f"{name}: XGBoost objective {self.objective!r}{targets} is not supported; expected {supported}"
            )

    def _signature(self, n_features: int) -> Signature:
        inputs = (TensorSpec(INPUT, "FP32", (-1, n_features), accepts=frozenset({"FP64"})),)
        if self._kind == "values":
            shape = (-1,) if self._columns == 1 else (-1, self._columns)
            return Signature(inputs=inputs, outputs=(TensorSpec(PREDICTIONS, "FP32", shape),))
        label = TensorSpec(LABEL, "INT64", (-1,))
        if self._kind == "label":
            return Signature(inputs=inputs, outputs=(label,))
        n_classes = 2 if self._columns == 1 else self._columns
        return Signature(inputs=inputs, outputs=(label, TensorSpec(PROBABILITIES, "FP32", (-1, n_classes))))


def _reason(message: str) -> str:
    """XGBoost's message without its timestamp, source location and native stack trace."""
    lines = message.strip().splitlines()
    return _LOG_PREFIX.sub("", lines[0]) if lines else "no reason given"
