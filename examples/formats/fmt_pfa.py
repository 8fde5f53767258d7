"""PFA examples, written as JSON from fitted scikit-learn models (PFA documents are plain data).

- ``iris-pfa``: a depth-3 decision tree on iris, walked with ``model.tree.simpleWalk``; its input
  is a record of the four measurements and its output the species (a string), in ``model.pfa``;
- ``diabetes-pfa``: a ridge regression on diabetes scored with ``model.reg.linear``; its input is
  a record of the ten features and its output a double, in ``model.pfa.json``.

Their config.yaml says ``trusted: true``: modelserve loads PFA only from files you trust, as titus2
turns a document into Python code (see ``modelserve/runtimes/pfa.py``). Numbers are written by
``json`` (shortest round-trip repr), so the documents hold the fitted thresholds and coefficients
exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

REQUIRES = ("sklearn",)

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_CLASSES = ("setosa", "versicolor", "virginica")
DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def build(out: Path) -> None:
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import Ridge
    from sklearn.tree import DecisionTreeClassifier

    iris = load_iris()
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(iris.data, np.array(IRIS_CLASSES)[iris.target])
    _save(out / "iris-pfa", "model.pfa", tree_pfa(tree), "Decision tree (depth 3) on iris, as PFA")
    diabetes = load_diabetes()
    ridge = Ridge(alpha=0.1).fit(diabetes.data, diabetes.target)
    _save(out / "diabetes-pfa", "model.pfa.json", linear_pfa(ridge), "Ridge regression on diabetes, as PFA")


def _record(name: str, fields: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": [{"name": f, "type": "double"} for f in fields]}


def tree_pfa(tree: Any) -> dict[str, Any]:
    node_type = {
        "type": "record",
        "name": "TreeNode",
        "fields": [
            {"name": "field", "type": {"type": "enum", "name": "IrisField", "symbols": list(IRIS_FEATURES)}},
            {"name": "operator", "type": "string"},
            {"name": "value", "type": "double"},
            {"name": "pass", "type": ["string", "TreeNode"]},
            {"name": "fail", "type": ["string", "TreeNode"]},
        ],
    }
    root = _node(tree.tree_, 0, [str(c) for c in tree.classes_])
    # titus cannot take {"fcn": "model.tree.simpleTest"} (a generic library function) as an argument
    test = {
        "params": [{"d": "Iris"}, {"t": "TreeNode"}],
        "ret": "boolean",
        "do": {"model.tree.simpleTest": ["d", "t"]},
    }
    return {
        "name": "iris_tree",
        "input": _record("Iris", IRIS_FEATURES),
        "output": "string",
        "cells": {"tree": {"type": node_type, "init": root["TreeNode"]}},
        "action": [{"model.tree.simpleWalk": ["input", {"cell": "tree"}, test]}],
    }


def _node(t: Any, i: int, classes: list[str]) -> dict[str, Any]:
    """Node ``i`` in Avro's JSON encoding of the union ``["string", "TreeNode"]``."""
    left, right = int(t.children_left[i]), int(t.children_right[i])
    if left == right:  # a leaf: both are -1
        return {"string": classes[int(np.argmax(t.value[i][0]))]}
    return {
        "TreeNode": {
            "field": IRIS_FEATURES[int(t.feature[i])],
            "operator": "<=",  # scikit-learn sends x <= threshold to the left child
            "value": float(t.threshold[i]),
            "pass": _node(t, left, classes),
            "fail": _node(t, right, classes),
        }
    }


def linear_pfa(regressor: Any) -> dict[str, Any]:
    model_type = {
        "type": "record",
        "name": "Linear",
        "fields": [
            {"name": "coeff", "type": {"type": "array", "items": "double"}},
            {"name": "const", "type": "double"},
        ],
    }
    features = {"new": [f"input.{name}" for name in DIABETES_FEATURES], "type": {"type": "array", "items": "double"}}
    return {
        "name": "diabetes_ridge",
        "input": _record("Diabetes", DIABETES_FEATURES),
        "output": "double",
        "cells": {
            "model": {
                "type": model_type,
                "init": {"coeff": [float(c) for c in regressor.coef_], "const": float(regressor.intercept_)},
            }
        },
        "action": [{"model.reg.linear": [features, {"cell": "model"}]}],
    }


def _save(model_dir: Path, file_name: str, document: dict[str, Any], description: str) -> None:
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "1" / file_name).write_text(json.dumps(document, indent=1) + "\n")
    # titus2 compiles PFA into Python and runs it: modelserve loads PFA only from trusted files
    (model_dir / "config.yaml").write_text(f"trusted: true\nmetadata:\n  description: {description}\n")
