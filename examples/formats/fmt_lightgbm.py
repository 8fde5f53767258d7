"""LightGBM examples, saved as LightGBM's text model format (``model.txt``):

- ``lightgbm-iris``: ``LGBMClassifier`` (10 rounds, 7 leaves) on iris, saved from its booster
  (``booster_.save_model``): a ``multiclass`` model with three classes;
- ``lightgbm-diabetes``: a booster from ``lightgbm.train`` (20 rounds, 7 leaves, ``regression``)
  on diabetes, with the data set's feature names.
"""

from __future__ import annotations

from pathlib import Path

REQUIRES = ("lightgbm", "sklearn")

IRIS_FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]

IRIS_CONFIG = """\
metadata:
  description: LightGBM classifier (LGBMClassifier, 10 rounds of 7-leaf trees) on the iris data set
  features: [sepal_length_cm, sepal_width_cm, petal_length_cm, petal_width_cm]
  classes: [setosa, versicolor, virginica]
"""

DIABETES_CONFIG = """\
metadata:
  description: LightGBM regressor (20 rounds of 7-leaf trees, L2 loss) on the diabetes data set
  features: [age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]
"""


def build(out: Path) -> None:
    import lightgbm as lgb
    from sklearn.datasets import load_diabetes, load_iris

    iris = load_iris()
    classifier = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, n_jobs=1, random_state=0, verbose=-1)
    classifier.fit(iris.data, iris.target, feature_name=IRIS_FEATURES)
    _version_dir(out, "lightgbm-iris", IRIS_CONFIG)
    classifier.booster_.save_model(out / "lightgbm-iris" / "1" / "model.txt")

    diabetes = load_diabetes()
    train = lgb.Dataset(diabetes.data, diabetes.target, feature_name=list(diabetes.feature_names))
    params = {"objective": "regression", "num_leaves": 7, "num_threads": 1, "seed": 0, "verbose": -1}
    booster = lgb.train(params, train, num_boost_round=20)
    _version_dir(out, "lightgbm-diabetes", DIABETES_CONFIG)
    booster.save_model(out / "lightgbm-diabetes" / "1" / "model.txt")


def _version_dir(out: Path, model: str, config: str) -> None:
    (out / model / "1").mkdir(parents=True, exist_ok=True)
    (out / model / "config.yaml").write_text(config, encoding="utf-8")
