"""Model-as-code example: ``python-iris``, a ``model.py`` that scores iris with numpy.

The version directory holds ``model.py``, ``coefficients.json`` (a scikit-learn
``LogisticRegression`` fitted on iris: weights, intercepts and classes, written as JSON so that
nothing is unpickled) and ``numerics.py``, a helper that ``model.py`` imports relatively
(``from .numerics import softmax``). The class declares its signature in code. Served only when
the server runs with ``--trust-code``.
"""

from __future__ import annotations

import json
from pathlib import Path

REQUIRES = ("sklearn",)

MODEL_PY = '''\
"""Iris logistic regression in numpy: coefficients from coefficients.json beside this file."""

import json
from pathlib import Path

import numpy as np

from .numerics import softmax


class Model:
    signature = {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    thread_safe = True  # predict only reads what load set

    def load(self, path: Path) -> None:
        doc = json.loads((path / "coefficients.json").read_text())
        self.coef = np.array(doc["coef"], dtype=np.float64)
        self.intercept = np.array(doc["intercept"], dtype=np.float64)
        self.classes = np.array(doc["classes"], dtype=np.int64)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probabilities = softmax(inputs["input"] @ self.coef.T + self.intercept)
        return {"label": self.classes[np.argmax(probabilities, axis=1)], "probabilities": probabilities}
'''

NUMERICS_PY = '''\
"""Helpers for model.py, imported relatively: the version directory is the model's package."""

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
'''

CONFIG = """\
# model.py declares its signature in code; it runs only on a server started with --trust-code
metadata:
  description: Logistic regression on iris, scored by numpy code (model.py) from JSON coefficients
  classes: [setosa, versicolor, virginica]
"""


def build(out: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    classifier = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    version_dir = out / "python-iris" / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    coefficients = {
        "coef": classifier.coef_.tolist(),  # JSON floats round-trip exactly
        "intercept": classifier.intercept_.tolist(),
        "classes": classifier.classes_.tolist(),
    }
    (version_dir / "coefficients.json").write_text(json.dumps(coefficients, indent=1))
    (version_dir / "model.py").write_text(MODEL_PY)
    (version_dir / "numerics.py").write_text(NUMERICS_PY)
    (out / "python-iris" / "config.yaml").write_text(CONFIG)
