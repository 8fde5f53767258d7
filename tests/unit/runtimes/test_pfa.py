"""PfaRuntime: signatures from Avro types, equality with scikit-learn, trust, refusals, the lock."""

from __future__ import annotations

import inspect
import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelserve.config.model import DEFAULT, ModelConfig
from modelserve.errors import InvalidInput, LoadError
from modelserve.runtimes.pfa import PfaRuntime
from tests.fixtures.models import build_format

TRUSTED = ModelConfig(trusted=True)
IRIS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
DIABETES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
COLOR = {"type": "enum", "name": "Color", "symbols": ["red", "blue"]}
# array input, record output of every served type (no comparison operators: titus calls avro's
# deprecated schema.Parse for each one, a DeprecationWarning that this suite turns into an error)
SUMMARY = {
    "input": {"type": "array", "items": "double"},
    "output": {
        "type": "record",
        "name": "Summary",
        "fields": [
            {"name": "total", "type": "double"},
            {"name": "count", "type": "long"},
            {"name": "has_one", "type": "boolean"},
            {"name": "color", "type": COLOR},
            {"name": "text", "type": "string"},
            {"name": "appended", "type": {"type": "array", "items": "double"}},
        ],
    },
    "action": [
        {"let": {"total": {"a.sum": ["input"]}}},
        {
            "new": {
                "total": "total",
                "count": {"a.len": ["input"]},
                "has_one": {"a.contains": ["input", 1.0]},
                "color": {"type": "Color", "value": "red"},
                "text": {"s.concat": [{"string": "n="}, {"s.int": {"a.len": ["input"]}}]},
                "appended": {"a.append": ["input", "total"]},
            },
            "type": "Summary",
        },
    ],
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_format("pfa", tmp_path_factory.mktemp("pfa"))


def write(tmp_path: Path, document: dict[str, Any] | str) -> Path:
    path = tmp_path / "model.pfa"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def load(path: Path, config: ModelConfig = TRUSTED) -> PfaRuntime:
    runtime = PfaRuntime()
    runtime.load(path, config)
    return runtime


def test_record_input_gives_one_tensor_per_field(repo: Path) -> None:
    runtime = PfaRuntime()
    signature = runtime.load(repo / "iris-pfa" / "1" / "model.pfa", TRUSTED)
    assert [(t.name, t.datatype, t.shape, t.accepts) for t in signature.inputs] == [
        (name, "FP64", (-1,), {"FP32"}) for name in IRIS
    ]
    assert [(t.name, t.datatype, t.shape) for t in signature.outputs] == [("output", "BYTES", (-1,))]
    signature = runtime.load(repo / "diabetes-pfa" / "1" / "model.pfa.json", TRUSTED)
    assert [t.name for t in signature.inputs] == list(DIABETES)
    assert [(t.name, t.datatype) for t in signature.outputs] == [("output", "FP64")]


def test_tree_and_regression_equal_scikit_learn(repo: Path) -> None:
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import Ridge
    from sklearn.tree import DecisionTreeClassifier

    iris = load_iris()
    labels = np.array(["setosa", "versicolor", "virginica"])[iris.target]
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(iris.data, labels)
    out = load(repo / "iris-pfa" / "1" / "model.pfa").predict({n: iris.data[:, i] for i, n in enumerate(IRIS)})
    assert [v.decode() for v in out["output"]] == tree.predict(iris.data).tolist()

    diabetes = load_diabetes()
    ridge = Ridge(alpha=0.1).fit(diabetes.data, diabetes.target)
    runtime = load(repo / "diabetes-pfa" / "1" / "model.pfa.json")
    out = runtime.predict({n: diabetes.data[:, i] for i, n in enumerate(DIABETES)})
    np.testing.assert_allclose(out["output"], ridge.predict(diabetes.data), rtol=1e-12)


def test_array_input_and_record_output(tmp_path: Path) -> None:
    runtime = PfaRuntime()
    signature = runtime.load(write(tmp_path, SUMMARY), TRUSTED)
    assert [(t.name, t.datatype, t.shape) for t in signature.inputs] == [("input", "FP64", (-1, -1))]
    assert [(t.name, t.datatype, t.shape) for t in signature.outputs] == [
        ("total", "FP64", (-1,)),
        ("count", "INT64", (-1,)),
        ("has_one", "BOOL", (-1,)),
        ("color", "BYTES", (-1,)),
        ("text", "BYTES", (-1,)),
        ("appended", "FP64", (-1, -1)),
    ]
    out = runtime.predict({"input": np.array([[1.0, 2.0], [-3.0, 0.5]])})
    np.testing.assert_array_equal(out["total"], [3.0, -2.5])
    assert out["count"].dtype == np.int64 and out["count"].tolist() == [2, 2]
    assert out["has_one"].tolist() == [True, False]
    assert out["color"].tolist() == [b"red", b"red"] and out["text"].tolist() == [b"n=2", b"n=2"]
    np.testing.assert_array_equal(out["appended"], [[1.0, 2.0, 3.0], [-3.0, 0.5, -2.5]])
    empty = runtime.predict({"input": np.zeros((0, 2))})
    assert empty["total"].shape == (0,) and empty["appended"].shape == (0, 0)


def test_string_and_enum_inputs_are_checked(tmp_path: Path) -> None:
    document = {
        "input": {
            "type": "record",
            "name": "In",
            "fields": [{"name": "word", "type": "string"}, {"name": "color", "type": COLOR}],
        },
        "output": "string",
        "action": [{"s.concat": ["input.word", {"s.int": {"enum.toInt": "input.color"}}]}],
    }
    runtime = PfaRuntime()
    signature = runtime.load(write(tmp_path, document), TRUSTED)
    assert {t.name: t.datatype for t in signature.inputs} == {"word": "BYTES", "color": "BYTES"}
    words = np.array([b"a", "é".encode()], dtype=object)
    out = runtime.predict({"word": words, "color": np.array([b"red", b"blue"], dtype=object)})
    assert out["output"].tolist() == [b"a0", "é1".encode()]
    with pytest.raises(InvalidInput, match=r"'color': \['green'\] not among \['blue', 'red'\]"):
        runtime.predict({"word": words, "color": np.array([b"red", b"green"], dtype=object)})
    with pytest.raises(InvalidInput, match="same number of rows"):
        runtime.predict({"word": words[:1], "color": np.array([b"red", b"red"], dtype=object)})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"input": {"type": "map", "values": "double"}, "action": 1.0}, r"input has Avro type \{\"type\": \"map\""),
        ({"output": ["null", "double"]}, "output has Avro type"),
        ({"method": "emit", "action": [{"emit": "input"}]}, "PFA method 'emit' is not served"),
    ],
    ids=["map-input", "union-output", "emit"],
)
def test_unsupported_documents_are_refused_by_name(tmp_path: Path, change: dict[str, Any], reason: str) -> None:
    document = {"input": "double", "output": "double", "action": "input", **change}
    with pytest.raises(LoadError, match=reason):
        load(write(tmp_path, document))


def test_untrusted_files_are_refused_before_titus_compiles_them(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # titus pastes the engine's name into the Python it generates: this one would create `marker`
    name = f"X(object): pass\n__import__('pathlib').Path({str(marker)!r}).touch()\nclass PFA_Y"
    path = write(tmp_path, {"name": name, "input": "double", "output": "double", "action": "input"})
    with pytest.raises(LoadError, match="trusted: true"):
        load(path, DEFAULT)
    assert not marker.exists()


def test_cells_that_read_files_or_urls_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text("1.5")
    document = {
        "input": "double",
        "output": "double",
        "cells": {"c": {"type": "double", "source": "json", "init": str(secret)}},
        "action": {"+": ["input", {"cell": "c"}]},
    }
    with pytest.raises(LoadError, match=r"cell 'c' has source 'json'.*embed its value"):
        load(write(tmp_path, document))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("corrupt\x00this is not a model artifact\n", "not a PFA document"),
        ("[1, 2]", "a PFA document is a JSON object, got list"),
        ('{"input": "double", "output": "string", "action": "input"}', "titus cannot load it: PFASemanticException"),
    ],
    ids=["garbage", "not-an-object", "type-error"],
)
def test_bad_documents_fail_with_the_reason(tmp_path: Path, content: str, reason: str) -> None:
    with pytest.raises(LoadError, match=reason):
        load(write(tmp_path, content))


def test_missing_titus_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "titus", None)
    with pytest.raises(LoadError, match=r"titus2 is not installed.*modelserve\[pfa\]"):
        load(write(tmp_path, {"input": "double", "output": "double", "action": "input"}))


def test_import_shims_do_not_outlive_the_import(repo: Path) -> None:
    load(repo / "diabetes-pfa" / "1" / "model.pfa.json")
    assert "titus.genpy" in sys.modules
    assert not hasattr(inspect, "getargspec") and "float_" not in vars(np)


def test_one_engine_scores_one_row_at_a_time(tmp_path: Path) -> None:
    # a counter cell: any two actions running at once would read the same count
    document = {
        "input": "double",
        "output": "long",
        "cells": {"n": {"type": "long", "init": 0}},
        "action": [{"cell": "n", "to": {"params": [{"x": "long"}], "ret": "long", "do": {"+": ["x", 1]}}}],
    }
    runtime = load(write(tmp_path, document))
    seen: list[int] = []

    def work() -> None:
        for _ in range(25):
            seen.extend(runtime.predict({"input": np.zeros(4)})["output"].tolist())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 8 * 25 * 4 + 1))


def test_unload_ends_the_engine(tmp_path: Path) -> None:
    runtime = load(write(tmp_path, {"input": "double", "output": "double", "action": "input"}))
    engine = runtime.model
    ended: list[bool] = []
    engine.end = lambda: ended.append(True)
    runtime.unload()
    assert runtime.model is None and ended == [True]
    runtime.unload()  # a second unload does nothing
