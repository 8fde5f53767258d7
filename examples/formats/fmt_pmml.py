"""PMML 4.4 examples, written as XML from fitted scikit-learn models (sklearn2pmml needs Maven).

- ``iris-pmml``: a depth-3 decision tree on iris → ``TreeModel`` (classification; outputs the
  predicted species and one probability per class);
- ``diabetes-pmml``: a ridge regression on diabetes → ``RegressionModel``;
- ``iris-forest-pmml``: a random forest of 3 depth-3 trees on iris → ``MiningModel`` whose
  ``Segmentation`` averages the trees' class probabilities, as scikit-learn's ``predict_proba`` does.

Numbers are written with ``repr`` so that every threshold and coefficient round-trips exactly.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REQUIRES = ("sklearn",)

NAMESPACE = "http://www.dmg.org/PMML-4_4"
IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_CLASSES = ("setosa", "versicolor", "virginica")
DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def build(out: Path) -> None:
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import Ridge
    from sklearn.tree import DecisionTreeClassifier

    iris = load_iris()
    labels = np.array(IRIS_CLASSES)[iris.target]
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(iris.data, labels)
    _save(out, "iris-pmml", tree_pmml(tree), "Decision tree (depth 3) on iris, as a PMML TreeModel")
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(iris.data, labels)
    _save(out, "iris-forest-pmml", forest_pmml(forest), "Random forest (3 trees) on iris, as a PMML MiningModel")
    diabetes = load_diabetes()
    ridge = Ridge(alpha=0.1).fit(diabetes.data, diabetes.target)
    _save(out, "diabetes-pmml", regression_pmml(ridge), "Ridge regression on diabetes, as a PMML RegressionModel")


def tree_pmml(tree: Any) -> ET.Element:
    root = _document(_iris_dictionary())
    model = _tree_model(root, tree)
    _insert_output(model, _classification_output())
    return root


def forest_pmml(forest: Any) -> ET.Element:
    root = _document(_iris_dictionary())
    mining = ET.SubElement(root, "MiningModel", functionName="classification", modelName="iris_forest")
    mining.append(_mining_schema(IRIS_FEATURES, "species"))
    mining.append(_classification_output())
    segmentation = ET.SubElement(mining, "Segmentation", multipleModelMethod="average")
    for i, estimator in enumerate(forest.estimators_, start=1):
        segment = ET.SubElement(segmentation, "Segment", id=str(i))
        ET.SubElement(segment, "True")
        _tree_model(segment, estimator, classes=forest.classes_)
    return root


def regression_pmml(regressor: Any) -> ET.Element:
    fields = [_field(name, "continuous", "double") for name in (*DIABETES_FEATURES, "progression")]
    root = _document(fields)
    model = ET.SubElement(root, "RegressionModel", functionName="regression", modelName="diabetes_ridge")
    model.append(_mining_schema(DIABETES_FEATURES, "progression"))
    output = ET.SubElement(model, "Output")
    ET.SubElement(
        output, "OutputField", name="predicted_progression", optype="continuous", dataType="double",
        feature="predictedValue",
    )  # fmt: skip
    table = ET.SubElement(model, "RegressionTable", intercept=repr(float(regressor.intercept_)))
    for name, coefficient in zip(DIABETES_FEATURES, regressor.coef_, strict=True):
        ET.SubElement(table, "NumericPredictor", name=name, exponent="1", coefficient=repr(float(coefficient)))
    return root


def _document(fields: Sequence[ET.Element]) -> ET.Element:
    root = ET.Element("PMML", xmlns=NAMESPACE, version="4.4")
    header = ET.SubElement(root, "Header", description="modelserve example model")
    ET.SubElement(header, "Application", name="modelserve examples/formats/fmt_pmml.py", version="1")
    dictionary = ET.SubElement(root, "DataDictionary", numberOfFields=str(len(fields)))
    dictionary.extend(fields)
    return root


def _field(name: str, optype: str, datatype: str, values: Sequence[str] = ()) -> ET.Element:
    field = ET.Element("DataField", name=name, optype=optype, dataType=datatype)
    for value in values:
        ET.SubElement(field, "Value", value=value)
    return field


def _iris_dictionary() -> list[ET.Element]:
    inputs = [_field(name, "continuous", "double") for name in IRIS_FEATURES]
    return [*inputs, _field("species", "categorical", "string", IRIS_CLASSES)]


def _mining_schema(features: Sequence[str], target: str) -> ET.Element:
    schema = ET.Element("MiningSchema")
    for name in features:
        ET.SubElement(schema, "MiningField", name=name, usageType="active")
    ET.SubElement(schema, "MiningField", name=target, usageType="target")
    return schema


def _classification_output() -> ET.Element:
    output = ET.Element("Output")
    ET.SubElement(
        output, "OutputField", name="predicted_species", optype="categorical", dataType="string",
        feature="predictedValue",
    )  # fmt: skip
    for label in IRIS_CLASSES:
        ET.SubElement(
            output, "OutputField", name=f"probability_{label}", optype="continuous", dataType="double",
            feature="probability", value=label,
        )  # fmt: skip
    return output


def _insert_output(model: ET.Element, output: ET.Element) -> None:
    model.insert(1, output)  # PMML order: MiningSchema, Output, then the model's body


def _tree_model(parent: ET.Element, tree: Any, classes: Any = None) -> ET.Element:
    """A classification ``TreeModel`` equal to ``tree`` (left child: ``x <= threshold``)."""
    classes = [str(c) for c in (tree.classes_ if classes is None else classes)]
    model = ET.SubElement(
        parent, "TreeModel", functionName="classification", splitCharacteristic="binarySplit",
        missingValueStrategy="none", noTrueChildStrategy="returnNullPrediction",
    )  # fmt: skip
    model.append(_mining_schema(IRIS_FEATURES, "species"))
    _node(model, tree.tree_, 0, ET.Element("True"), classes)
    return model


def _node(parent: ET.Element, t: Any, i: int, predicate: ET.Element, classes: list[str]) -> None:
    counts = t.value[i][0] * t.weighted_n_node_samples[i] / t.value[i][0].sum()
    node = ET.SubElement(parent, "Node", id=str(i), score=classes[int(np.argmax(counts))])
    node.append(predicate)
    for label, count in zip(classes, counts, strict=True):
        probability = repr(float(count / counts.sum()))
        ET.SubElement(node, "ScoreDistribution", value=label, recordCount=repr(float(count)), probability=probability)
    left, right = int(t.children_left[i]), int(t.children_right[i])
    if left == right:  # a leaf: both are -1
        return
    field, threshold = IRIS_FEATURES[int(t.feature[i])], repr(float(t.threshold[i]))
    _node(parent=node, t=t, i=left, predicate=_split(field, "lessOrEqual", threshold), classes=classes)
    _node(parent=node, t=t, i=right, predicate=_split(field, "greaterThan", threshold), classes=classes)


def _split(field: str, operator: str, value: str) -> ET.Element:
    return ET.Element("SimplePredicate", field=field, operator=operator, value=value)


def _save(out: Path, name: str, root: ET.Element, description: str) -> None:
    path = out / name / "1" / "model.pmml"
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    (out / name / "config.yaml").write_text(f"metadata:\n  description: {description}\n")
