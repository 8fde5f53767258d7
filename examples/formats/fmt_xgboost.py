"""XGBoost examples, saved natively by XGBoost 2.1+ (nothing pickled):

- ``xgboost-iris``: ``XGBClassifier`` (10 rounds, depth 3) on iris, saved with the scikit-learn
  wrapper's ``save_model`` as UBJSON (``model.ubj``): a plain ``multi:softprob`` booster on disk;
- ``xgboost-diabetes``: a booster from ``xgboost.train`` (20 rounds, depth 3, squared error) on
  diabetes, with the data set's feature names, saved as JSON (``model.json``).
"""

from __future__ import annotations

from pathlib import Path

REQUIRES = ("xgboost", "sklearn")

IRIS_CONFIG = """\
metadata:
  description: XGBoost classifier (XGBClassifier, 10 rounds of depth-3 trees) on the iris data set
  features: [sepal_length_cm, sepal_width_cm, petal_length_cm, petal_width_cm]
  classes: [setosa, versicolor, virginica]
"""

DIABETES_CONFIG = """\
metadata:
  description: XGBoost regressor (20 rounds of depth-3 trees, squared error) on the diabetes data set
  features: [age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]
"""


def build(out: Path) -> None:
    import xgboost as xgb
    from sklearn.datasets import load_diabetes, load_iris

    iris = load_iris()
    classifier = xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1, random_state=0)
    classifier.fit(iris.data, iris.target)
    _version_dir(out, "xgboost-iris", IRIS_CONFIG)
    classifier.save_model(out / "xgboost-iris" / "1" / "model.ubj")

    diabetes = load_diabetes()
    train = xgb.DMatrix(diabetes.data, diabetes.target, feature_names=list(diabetes.feature_names))
    params = {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}
    booster = xgb.train(params, train, num_boost_round=20)
    _version_dir(out, "xgboost-diabetes", DIABETES_CONFIG)
    booster.save_model(out / "xgboost-diabetes" / "1" / "model.json")


def _version_dir(out: Path, model: str, config: str) -> None:
    (out / model / "1").mkdir(parents=True, exist_ok=True)
    (out / model / "config.yaml").write_text(config, encoding="utf-8")
