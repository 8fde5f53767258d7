"""TensorFlow SavedModels in TF Serving's layout (``<model>/<version>/saved_model.pb`` + ``variables/``).

- ``tf-iris``: logistic regression on iris, fitted by scikit-learn and copied into ``tf.Variable``
  weights. Signature ``serving_default``: ``features`` FP32 [-1, 4] -> ``class_ids`` INT64 [-1] and
  ``probabilities`` FP32 [-1, 3]; signature ``predict_logits``: ``features`` -> ``logits``.
- ``tf-scorer``: two named inputs of different datatypes, ``x`` FP64 [-1, 2] and ``word`` BYTES
  [-1]; outputs ``score`` FP64, ``length`` INT32, ``positive`` BOOL and ``label`` BYTES, all [-1].

Built with TensorFlow itself; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REQUIRES = ("tensorflow",)

TF_IRIS_CONFIG = """\
metadata:
  description: Logistic regression on the iris data set, as a TensorFlow SavedModel
  classes: [setosa, versicolor, virginica]
"""


def build(out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    _save(tf, _iris_module(tf), out / "tf-iris" / "1", ("serve", "logits"))
    (out / "tf-iris" / "config.yaml").write_text(TF_IRIS_CONFIG)
    _save(tf, _scorer_module(tf), out / "tf-scorer" / "1", ("serve",))


def _save(tf: Any, module: Any, path: Path, methods: tuple[str, ...]) -> None:
    names = {"serve": "serving_default", "logits": "predict_logits"}
    signatures = {names[m]: getattr(module, m) for m in methods}
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(path), signatures=signatures)


def _iris_module(tf: Any) -> Any:
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    classifier = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    features = tf.TensorSpec([None, 4], tf.float32, name="features")

    class Iris(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="iris")
            self.weights = tf.Variable(classifier.coef_.T.astype(np.float32), name="weights")
            self.bias = tf.Variable(classifier.intercept_.astype(np.float32), name="bias")

        @tf.function(input_signature=[features])
        def serve(self, features: Any) -> dict[str, Any]:
            logits = tf.matmul(features, self.weights) + self.bias
            return {"probabilities": tf.nn.softmax(logits), "class_ids": tf.argmax(logits, axis=1)}

        @tf.function(input_signature=[features])
        def logits(self, features: Any) -> dict[str, Any]:
            return {"logits": tf.matmul(features, self.weights) + self.bias}

    return Iris()


def _scorer_module(tf: Any) -> Any:
    class Scorer(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="scorer")
            self.weights = tf.Variable([1.5, -2.0], dtype=tf.float64, name="weights")

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 2], tf.float64, name="x"),
                tf.TensorSpec([None], tf.string, name="word"),
            ]
        )
        def serve(self, x: Any, word: Any) -> dict[str, Any]:
            length = tf.strings.length(word, unit="UTF8_CHAR")
            score = tf.reduce_sum(x * self.weights, axis=1) + 0.1 * tf.cast(length, tf.float64)
            positive = score > 0
            return {
                "score": score,
                "length": length,
                "positive": positive,
                "label": tf.where(positive, tf.constant("positive"), tf.constant("negative")),
            }

    return Scorer()
