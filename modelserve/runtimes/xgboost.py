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

Corrupt files: XGBoost's own errors become LoadError (``<file>: XGBoost cannot load it: <reason>``).
XGBoost does not check tree links, and its UBJSON reader trusts stored lengths, so a damaged
file can crash the process instead; the document is therefore decoded and its trees checked
before XGBoost reads it (:func:`_check_model`).

Categorical features are sent as their category codes, as for any numpy input to XGBoost.

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
# integer arrays with one entry per node, in the order _trees_problem unpacks them
_NODE_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_type")
_UBJ_NUMBERS: Mapping[bytes, np.dtype[Any]] = {
    b"i": np.dtype("i1"), b"U": np.dtype("u1"), b"C": np.dtype("u1"), b"I": np.dtype(">i2"),
    b"l": np.dtype(">i4"), b"L": np.dtype(">i8"), b"d": np.dtype(">f4"), b"D": np.dtype(">f8"),
}  # fmt: skip
_UBJ_INTS = frozenset({b"i", b"U", b"I", b"l", b"L"})
_UBJ_CONSTANTS = {b"T": True, b"F": False, b"Z": None}
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
        _check_model(artifact)
        if config.device != "cpu" and not xgb.build_info().get("USE_CUDA"):
            raise LoadError(
                f"config.yaml asks for device {config.device!r}, but this XGBoost is built without CUDA "
                "(the xgboost-cpu wheel); install the xgboost wheel with CUDA"
            )
        try:
            booster = xgb.Booster(model_file=artifact)
            booster.set_param({"nthread": config.threads, "device": config.device})
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

    def native_model(self) -> Any:
        """The Booster itself, for explainers (shap's TreeExplainer asks it for contributions):
        XGBoost's prediction is thread-safe for the tree boosters served here (see above)."""
        return self.model

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


class _Malformed(Exception):
    pass


def _check_model(artifact: Path) -> None:
    """Refuse a model that would crash XGBoost; leave any other refusal to XGBoost and its reason.

    XGBoost checks a model's syntax and array lengths, not its trees: an edited child or parent
    link or split feature makes it read out of bounds, while loading or at prediction time, and
    crash the process. Its UBJSON reader moreover trusts every stored length, so a truncated
    ``.ubj`` makes it read past its buffer or allocate without bound. So the document is decoded
    here first (JSON as XGBoost reads ``*.json`` and files starting with ``{"``; UBJSON otherwise,
    with bounds checks, typed arrays as numpy views) and its trees are checked.
    """
    try:
        data = artifact.read_bytes()
    except OSError as exc:
        raise LoadError(f"{artifact.name}: cannot read it: {exc.strerror}") from None
    document: Any
    if artifact.suffix == ".json" or data.startswith(b'{"'):
        try:
            document = json.loads(data)
        except ValueError:  # XGBoost's JSON reader checks its bounds and says what is wrong
            return
    elif data.startswith(b"{"):
        try:
            document, end = _ubj_value(data, 0)
            if end != len(data):
                raise _Malformed(f"{len(data) - end} stray bytes after the model")
        except _Malformed as exc:
            raise LoadError(f"{artifact.name}: not a complete UBJSON model (is the file truncated?): {exc}") from None
        except RecursionError:  # XGBoost would overflow its stack
            raise LoadError(f"{artifact.name}: not a UBJSON model: nested too deeply") from None
    else:
        return  # no model of either format; XGBoost refuses it
    try:
        booster = document["learner"]["gradient_booster"]
        trees = booster.get("gbtree", booster)["model"]["trees"]  # dart nests the gbtree model
        n_features = int(document["learner"]["learner_model_param"]["num_feature"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return  # not the layout of a tree model: XGBoost refuses it, or it is gblinear
    try:
        problem = _trees_problem(trees, n_features)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"cannot read {type(exc).__name__}: {exc}"
    if problem:
        raise LoadError(f"{artifact.name}: the XGBoost model is malformed: {problem}")


def _ubj_value(data: bytes, pos: int, marker: bytes = b"") -> tuple[Any, int]:
    """The UBJSON value at ``pos`` (whose type ``marker`` was given for typed arrays) and the offset after it."""
    if not marker:
        marker, pos = data[pos : pos + 1], pos + 1
    if marker in _UBJ_NUMBERS:
        dtype = _UBJ_NUMBERS[marker]
        end = _need(data, pos, dtype.itemsize)
        return np.frombuffer(data, dtype, 1, pos)[0].item(), end
    if marker in _UBJ_CONSTANTS:
        return _UBJ_CONSTANTS[marker], pos
    if marker in (b"S", b"H"):
        length, pos = _ubj_length(data, pos)
        return data[pos : _need(data, pos, length)].decode("utf-8", "replace"), pos + length
    if marker == b"[":
        return _ubj_array(data, pos)
    if marker == b"{":
        members: dict[str, Any] = {}
        while data[pos : pos + 1] != b"}":  # key (a length and its bytes), then value
            length, pos = _ubj_length(data, pos)
            key = data[pos : _need(data, pos, length)].decode("utf-8", "replace")
            members[key], pos = _ubj_value(data, pos + length)
        return members, pos + 1
    raise _Malformed(f"unexpected {marker!r} at byte {pos - 1}" if marker else "it ends early")


def _ubj_array(data: bytes, pos: int) -> tuple[Any, int]:
    kind = b""
    if data[pos : pos + 1] == b"$":
        kind, pos = data[pos + 1 : pos + 2], pos + 2
        if data[pos : pos + 1] != b"#":
            raise _Malformed(f"typed array without a count at byte {pos}")
    if data[pos : pos + 1] == b"#":
        count, pos = _ubj_length(data, pos + 1)
        if kind in _UBJ_NUMBERS:  # the common case: a numpy view, no copy
            dtype = _UBJ_NUMBERS[kind]
            end = _need(data, pos, count * dtype.itemsize)
            return np.frombuffer(data, dtype, count, pos), end
        items = []
        for _ in range(count):
            item, pos = _ubj_value(data, pos, kind)
            items.append(item)
        return items, pos
    items = []
    while data[pos : pos + 1] != b"]":
        item, pos = _ubj_value(data, pos)
        items.append(item)
    return items, pos + 1


def _ubj_length(data: bytes, pos: int) -> tuple[int, int]:
    marker = data[pos : pos + 1]
    if marker not in _UBJ_INTS:
        raise _Malformed(f"expected a length at byte {pos}, got {marker!r}" if marker else "it ends early")
    end = _need(data, pos + 1, _UBJ_NUMBERS[marker].itemsize)
    length = int(np.frombuffer(data, _UBJ_NUMBERS[marker], 1, pos + 1)[0])
    if length < 0:
        raise _Malformed(f"negative length at byte {pos}")
    return length, end


def _need(data: bytes, pos: int, size: int) -> int:
    if pos + size > len(data):
        raise _Malformed(f"{size} bytes needed at byte {pos}, {max(len(data) - pos, 0)} left")
    return pos + size


def _trees_problem(trees: Sequence[Mapping[str, Any]], n_features: int) -> str:
    """What is wrong with the trees, or "". Every walk from a root must end at a leaf, inside the arrays."""
    sizes = np.array([len(tree["left_children"]) for tree in trees], dtype=np.int64)
    for number, tree in enumerate(trees):
        n = sizes[number]
        if n == 0 or int(tree["tree_param"]["num_nodes"]) != n or any(len(tree[k]) != n for k in _NODE_ARRAYS):
            return f"tree {number}: its node arrays differ in length"
    if not trees:
        return ""
    starts = np.cumsum(sizes) - sizes
    tree_of = np.repeat(np.arange(len(trees)), sizes)
    left, right, parent, feature, kind = (
        np.concatenate([np.asarray(tree[key], dtype=np.int64) for tree in trees]) for key in _NODE_ARRAYS
    )
    internal = np.flatnonzero(left != -1)
    owner = tree_of[internal]
    children = np.concatenate([left[internal], right[internal]])
    outside = (children < 1) | (children >= np.tile(sizes[owner], 2))  # a root (0) is nobody's child
    if outside.any():
        return f"tree {np.tile(owner, 2)[outside.argmax()]}: a child link points outside the tree"
    at = children + np.tile(starts[owner], 2)  # the children, as offsets into the concatenated arrays
    parents = np.bincount(at, minlength=len(left))
    if (parents > 1).any():  # so no walk loops
        return f"tree {tree_of[parents.argmax()]}: a node has two parents"
    wrong = parent[at] != np.tile(internal - starts[owner], 2)  # XGBoost follows parent links too
    if wrong.any():
        return f"tree {tree_of[at[wrong.argmax()]]}: a parent link is wrong"
    outside = (feature[internal] < 0) | (feature[internal] >= n_features)
    if outside.any():
        return f"tree {owner[outside.argmax()]}: a split feature is outside [0, {n_features})"
    special = set(tree_of[internal[kind[internal] == 1]].tolist())  # trees with categorical splits
    special |= {k for k, tree in enumerate(trees) if int(tree["tree_param"]["size_leaf_vector"]) > 1}
    for number in sorted(special):
        start, end = int(starts[number]), int(starts[number] + sizes[number])
        problem = _leaves_and_categories_problem(trees[number], left[start:end], right[start:end], kind[start:end])
        if problem:
            return f"tree {number}: {problem}"
    return ""


def _leaves_and_categories_problem(
    tree: Mapping[str, Any], left: np.ndarray, right: np.ndarray, kind: np.ndarray
) -> str:
    internal = left != -1
    width = int(tree["tree_param"]["size_leaf_vector"])
    if width > 1:  # a vector leaf's right link indexes leaf_weights
        leaves = right[~internal]
        if ((leaves < 0) | ((leaves + 1) * width > len(tree["leaf_weights"]))).any():
            return "a leaf points outside leaf_weights"
    nodes = np.asarray(tree["categories_nodes"], np.int64)
    starts = np.asarray(tree["categories_segments"], np.int64)
    sizes = np.asarray(tree["categories_sizes"], np.int64)
    if not (len(nodes) == len(starts) == len(sizes)) or ((starts < 0) | (sizes < 0)).any():
        return "its categorical splits are inconsistent"
    if (starts + sizes > len(tree["categories"])).any():
        return "a categorical split points outside its categories"
    if not set(np.flatnonzero(internal & (kind == 1)).tolist()) <= set(nodes.tolist()):
        return "a categorical split has no categories"
    return ""


def _reason(message: str) -> str:
    """XGBoost's message without its timestamp, source location and native stack trace."""
    lines = message.strip().splitlines()
    return _LOG_PREFIX.sub("", lines[0]) if lines else "no reason given"
