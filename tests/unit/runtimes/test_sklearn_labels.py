"""The scikit-learn runtime derives ``label`` from ``probabilities`` only where that is exactly what
``predict`` returns; elsewhere it still calls ``predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from modelserve.config.model import ModelConfig
from modelserve.runtimes.sklearn import SklearnRuntime


def _served(tmp_path: Path, estimator: object) -> SklearnRuntime:
    sio.dump(estimator, tmp_path / "model.skops")
    runtime = SklearnRuntime()
    untrusted = sio.get_untrusted_types(file=tmp_path / "model.skops")
    runtime.load(tmp_path / "model.skops", ModelConfig(trusted_types=tuple(untrusted)))
    return runtime


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(max_iter=500),
        RandomForestClassifier(n_estimators=7, random_state=0),
        make_pipeline(StandardScaler(), LogisticRegression()),
        # calibrated probabilities need not agree with the classifier's own decision: predict() is used
        CalibratedClassifierCV(SVC(), ensemble=False),
    ],
    ids=["logistic", "forest", "pipeline", "calibrated-svc"],
)
def test_label_is_what_predict_returns(tmp_path: Path, estimator: object) -> None:
    x, y = make_classification(n_samples=300, n_features=5, n_classes=3, n_informative=3, random_state=2)
    estimator.fit(x, y)  # type: ignore[attr-defined]
    runtime = _served(tmp_path, estimator)
    probe = np.vstack([x, np.random.default_rng(0).normal(size=(300, 5)) * 3])
    out = runtime.predict({"input": probe})
    np.testing.assert_array_equal(out["label"], estimator.predict(probe))  # type: ignore[attr-defined]
    assert out["label"].dtype == estimator.predict(probe).dtype  # type: ignore[attr-defined]
    np.testing.assert_allclose(out["probabilities"], estimator.predict_proba(probe))  # type: ignore[attr-defined]
