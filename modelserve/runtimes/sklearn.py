"""scikit-learn estimators from ``.skops`` files, or pickle/joblib files when trusted.

skops loads only types it trusts (scikit-learn, numpy, ...) plus those the model's config lists
under ``trusted_types``; anything else refuses to load, naming the types. Pickle and joblib files
can run arbitrary code when loaded, so they load only with ``trusted: true`` in config.yaml.

Threads: scikit-learn computes with NumPy's BLAS (OpenBLAS, one thread per core by default) and
OpenMP. Both pools are process-wide, so each load caps them at the largest ``threads`` any
scikit-learn model has asked for (default 1) with threadpoolctl; the server's inference threads
already run requests side by side.

Signature: input ``input`` FP64 ``[-1, n_features_in_]`` (FP32 accepted too); outputs ``label``
(``predict``) and, where the estimator has ``predict_proba``, ``probabilities``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig
from modelserve.errors import LoadError
from modelserve.runtimes.base import missing_extra
from modelserve.types import Signature, TensorSpec, datatype_of

INPUT = "input"
LABEL = "label"
PROBABILITIES = "probabilities"


class SklearnRuntime:
    platform = "sklearn"

    def __init__(self) -> None:
        self.model: Any = None
        self._has_proba = False
        self._label_is_argmax = False  # predict(x) == classes_[predict_proba(x).argmax(1)], ties included

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        try:
            import sklearn  # noqa: F401  (the estimators unpickled below need it)
        except ImportError:
            raise missing_extra("scikit-learn", "sklearn") from None
        _cap_threads(config.threads)
        self.model = _load_skops(artifact, config) if artifact.suffix == ".skops" else _load_pickle(artifact, config)
        if not hasattr(self.model, "predict"):
            raise LoadError(f"{artifact.name}: {type(self.model).__name__} has no predict method")
        self._has_proba = _has_proba(self.model)
        self._label_is_argmax = self._has_proba and _final_step(self.model) in _ARGMAX_CLASSIFIERS
        return self._signature()

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        x = inputs[INPUT]
        if x.shape[0] == 0:  # scikit-learn refuses empty batches; answer with empty outputs of the right type
            return {k: v[:0] for k, v in self.predict({INPUT: np.zeros((1, *x.shape[1:]), x.dtype)}, outputs).items()}
        result: dict[str, np.ndarray] = {}
        want_label = outputs is None or LABEL in outputs
        if self._has_proba and (outputs is None or PROBABILITIES in outputs):
            result[PROBABILITIES] = np.asarray(self.model.predict_proba(x), dtype=np.float64)
            if want_label and self._label_is_argmax:
                # one scikit-learn call instead of two (~160 µs each, whatever the batch size)
                result[LABEL] = self.model.classes_[result[PROBABILITIES].argmax(axis=1)]
                return result
        if want_label:
            result[LABEL] = np.asarray(self.model.predict(x))
        return result

    def native_model(self) -> Any:
        """The estimator itself, for explainers that read its trees (shap's TreeExplainer);
        shared with predict, which only reads it too."""
        return self.model

    def unload(self) -> None:
        self.model = None

    def _signature(self) -> Signature:
        n_features = int(getattr(self.model, "n_features_in_", -1))
        inputs = (TensorSpec(INPUT, "FP64", (-1, n_features), accepts=frozenset({"FP32"})),)
        classes = getattr(self.model, "classes_", None)
        if isinstance(classes, np.ndarray) and classes.ndim == 1:
            label = TensorSpec(LABEL, _label_datatype(classes), (-1,))
        else:
            n_outputs = int(getattr(self.model, "n_outputs_", 1))
            label = TensorSpec(LABEL, "FP64", (-1,) if n_outputs == 1 else (-1, n_outputs))
        outputs = [label]
        if self._has_proba:
            n_classes = len(classes) if classes is not None else -1
            outputs.append(TensorSpec(PROBABILITIES, "FP64", (-1, n_classes)))
        return Signature(inputs=inputs, outputs=tuple(outputs))


_threads_lock = threading.Lock()
_threads = 0  # the cap set so far: the largest count asked for


def _cap_threads(threads: int) -> None:
    global _threads
    with _threads_lock:
        if threads <= _threads:
            return
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        threadpool_limits(limits=threads)
        _threads = threads


def _load_skops(artifact: Path, config: ModelConfig) -> Any:
    try:
        import skops.io as sio
    except ImportError:
        raise missing_extra("skops", "sklearn") from None
    try:
        untrusted = sio.get_untrusted_types(file=artifact)
    except Exception as exc:  # a corrupt archive raises zipfile/json errors
        raise LoadError(f"{artifact.name}: not a readable skops file: {exc}") from None
    refused = sorted(set(untrusted) - set(config.trusted_types))
    if refused:
        raise LoadError(
            f"{artifact.name}: skops found types it does not trust: {refused}; if you trust this "
            "file, list them under 'trusted_types' in the model's config.yaml"
        )
    try:
        return sio.load(artifact, trusted=untrusted)
    except Exception as exc:
        raise LoadError(f"{artifact.name}: skops cannot load it: {exc}") from None


def _load_pickle(artifact: Path, config: ModelConfig) -> Any:
    if not config.trusted:
        raise LoadError(
            f"{artifact.name}: pickle/joblib files can run arbitrary code when loaded, so they are "
            "refused unless the model's config.yaml says 'trusted: true'; prefer saving with "
            "skops.io.dump to a .skops file"
        )
    import joblib  # a scikit-learn dependency; reads plain pickles too

    try:
        return joblib.load(artifact)
    except Exception as exc:
        raise LoadError(f"{artifact.name}: cannot unpickle it: {exc}") from None


# Estimators whose predict() is exactly classes_[argmax(predict_proba())], ties resolved the same
# way (both take the first maximum of a monotone transform of the same scores). Not SVC (Platt
# scaling can disagree with its decision function), not MLPClassifier (a binary one thresholds),
# nor anything not checked against scikit-learn's source: those call predict() as well.
_ARGMAX_CLASSIFIERS = frozenset(
    {
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.naive_bayes.GaussianNB",
    }
)


def _final_step(model: Any) -> str:
    """The qualified class name of the estimator that predicts (a Pipeline's last step)."""
    steps = getattr(model, "steps", None)
    estimator = steps[-1][1] if isinstance(steps, list) and steps else model
    cls = type(estimator)
    return f"{cls.__module__}.{cls.__qualname__}"


def _has_proba(model: Any) -> bool:
    try:
        return hasattr(model, "predict_proba") and getattr(model, "classes_", None) is not None
    except Exception:  # available_if raises AttributeError-like errors on some pipelines
        return False


def _label_datatype(classes: np.ndarray) -> str:
    if classes.dtype.kind in "OUS":
        return "BYTES"
    return "INT64" if classes.dtype.kind in "iu" else datatype_of(classes)
