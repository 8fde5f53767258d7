"""XGBoostRuntime: signatures by objective, threads, width checks, empty batches, errors, concurrency."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_diabetes, load_iris

from modelserve.config.model import ModelConfig
from modelserve.core.signature import adapt
from modelserve.core.validation import Plan
from modelserve.errors import InvalidInput, LoadError
from modelserve.runtimes.xgboost import XGBoostRuntime
from modelserve.types import InferRequest, Signature, Tensor

IRIS = load_iris()
DIABETES = load_diabetes()
X = np.random.default_rng(3).uniform(0.1, 7.9, size=(16, 4)).astype(np.float32)


def train(path: Path, params: dict[str, Any], data: Any, label: Any, **dmatrix: Any) -> Path:
    tree = {"max_depth": 2} if params.get("booster") != "gblinear" else {}
    booster = xgb.train({"nthread": 1, **tree, **params}, xgb.DMatrix(data, label, **dmatrix), 3)
    booster.save_model(path)
    return path


def load(path: Path, threads: int = 1) -> tuple[XGBoostRuntime, Signature]:
    runtime = XGBoostRuntime()
    return runtime, runtime.load(path, ModelConfig(threads=threads))


def specs(signature: Signature) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(t.name, t.datatype, t.shape) for t in (*signature.inputs, *signature.outputs)]


@pytest.mark.parametrize("threads", [1, 3])
def test_nthread_comes_from_the_model_config(tmp_path: Path, threads: int) -> None:
    runtime, _ = load(train(tmp_path / "model.ubj", {"objective": "reg:squarederror"}, IRIS.data, IRIS.target), threads)
    generic = json.loads(runtime.model.save_config())["learner"]["generic_param"]
    assert generic["nthread"] == str(threads)  # never "0", XGBoost's "every core"


def test_sklearn_classifier_saved_natively_serves_labels_and_probabilities(tmp_path: Path) -> None:
    classifier = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(IRIS.data, IRIS.target)
    classifier.save_model(tmp_path / "model.ubj")
    runtime, signature = load(tmp_path / "model.ubj")
    assert specs(signature) == [
        ("input", "FP32", (-1, 4)),
        ("label", "INT64", (-1,)),
        ("probabilities", "FP32", (-1, 3)),
    ]
    assert signature.inputs[0].accepts == {"FP64"}
    out = runtime.predict({"input": X})
    np.testing.assert_array_equal(out["probabilities"], classifier.predict_proba(X))
    np.testing.assert_array_equal(out["label"], classifier.predict(X))
    assert out["label"].dtype == np.int64


def test_binary_classifier_gets_two_columns_like_scikit_learn(tmp_path: Path) -> None:
    classifier = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(IRIS.data, IRIS.target == 2)
    classifier.save_model(tmp_path / "model.json")
    runtime, signature = load(tmp_path / "model.json")
    assert signature.outputs[1].shape == (-1, 2)
    out = runtime.predict({"input": X})
    np.testing.assert_array_equal(out["probabilities"], classifier.predict_proba(X))
    np.testing.assert_array_equal(out["label"], classifier.predict(X))


@pytest.mark.parametrize("objective", ["multi:softmax", "binary:hinge"])
def test_objectives_that_predict_the_class_serve_only_a_label(tmp_path: Path, objective: str) -> None:
    params = {"objective": objective, **({"num_class": 3} if objective == "multi:softmax" else {})}
    label = IRIS.target if objective == "multi:softmax" else IRIS.target == 2
    runtime, signature = load(train(tmp_path / "model.json", params, IRIS.data, label))
    assert specs(signature)[1:] == [("label", "INT64", (-1,))]
    expected = xgb.Booster(model_file=tmp_path / "model.json").predict(xgb.DMatrix(X))
    np.testing.assert_array_equal(runtime.predict({"input": X})["label"], expected.astype(np.int64))


def test_multi_quantile_regressor_has_one_column_per_quantile(tmp_path: Path) -> None:
    params = {"objective": "reg:quantileerror", "quantile_alpha": [0.1, 0.5, 0.9]}
    runtime, signature = load(train(tmp_path / "model.ubj", params, DIABETES.data, DIABETES.target))
    assert specs(signature) == [("input", "FP32", (-1, 10)), ("predictions", "FP32", (-1, 3))]
    assert runtime.predict({"input": DIABETES.data[:5].astype(np.float32)})["predictions"].shape == (5, 3)


def test_feature_names_and_count_come_from_the_booster(tmp_path: Path) -> None:
    names = list(DIABETES.feature_names)
    path = train(tmp_path / "model.json", {}, DIABETES.data, DIABETES.target, feature_names=names)
    runtime, signature = load(path)
    assert runtime.feature_names == tuple(names)
    assert signature.inputs[0].shape == (-1, 10)
    unnamed, _ = load(train(tmp_path / "unnamed.json", {}, DIABETES.data, DIABETES.target))
    assert unnamed.feature_names is None


def test_server_validation_rejects_a_wrong_width_and_casts_fp64(tmp_path: Path) -> None:
    _, signature = load(
        train(tmp_path / "model.ubj", {"objective": "multi:softprob", "num_class": 3}, IRIS.data, IRIS.target)
    )
    plan = Plan("xgb version 1", adapt(signature, None))
    with pytest.raises(InvalidInput, match=r"got shape \[2, 3\], expected \[-1, 4\]"):
        plan.inputs(InferRequest(inputs=[Tensor("input", "FP32", np.zeros((2, 3), np.float32))]))
    feeds = plan.inputs(InferRequest(inputs=[Tensor("input", "FP64", np.zeros((2, 4)))]))
    assert feeds["input"].dtype == np.float32


@pytest.mark.parametrize(
    ("params", "names", "shapes"),
    [
        ({"objective": "multi:softprob", "num_class": 3}, ("label", "probabilities"), [(0,), (0, 3)]),
        ({"objective": "binary:logistic"}, ("label", "probabilities"), [(0,), (0, 2)]),
        ({"objective": "multi:softmax", "num_class": 3}, ("label",), [(0,)]),
        ({"objective": "reg:squarederror"}, ("predictions",), [(0,)]),
    ],
    ids=["softprob", "logistic", "softmax", "regression"],
)
def test_empty_batch_gives_empty_outputs_of_the_signature_shape(
    tmp_path: Path, params: dict[str, Any], names: tuple[str, ...], shapes: list[tuple[int, ...]]
) -> None:
    label = IRIS.target if "num_class" in params else IRIS.target == 2
    runtime, signature = load(train(tmp_path / "model.ubj", params, IRIS.data, label))
    out = runtime.predict({"input": np.zeros((0, 4), np.float32)})
    assert tuple(out) == names
    assert [v.shape for v in out.values()] == shapes
    assert [v.dtype for v in out.values()] == [
        np.dtype(np.int64 if t.datatype == "INT64" else np.float32) for t in signature.outputs
    ]


@pytest.mark.parametrize(
    "content",
    [b"corrupt\x00this is not a model artifact\n", b"", b'{"learner": 42}'],
    ids=["garbage", "empty", "wrong-json"],
)
def test_a_corrupt_file_gives_load_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.json"
    path.write_bytes(content)
    with pytest.raises(LoadError, match=r"^model\.json: XGBoost cannot load it: ") as info:
        XGBoostRuntime().load(path, ModelConfig())
    assert "Stack trace" not in str(info.value)


@pytest.mark.parametrize("suffix", ["ubj", "json"])
def test_every_truncation_gives_load_error(tmp_path: Path, suffix: str) -> None:
    """XGBoost's UBJSON reader would read past the end of many of these and crash; its JSON reader refuses them."""
    params = {"objective": "multi:softprob", "num_class": 3}
    whole = train(tmp_path / f"whole.{suffix}", params, IRIS.data, IRIS.target).read_bytes()
    path = tmp_path / f"model.{suffix}"
    reason = "not a complete UBJSON model" if suffix == "ubj" else "XGBoost cannot load it"
    for cut in range(1, len(whole) - 1, max(1, len(whole) // 300)):
        path.write_bytes(whole[:cut])
        with pytest.raises(LoadError, match=rf"^model\.{suffix}: {reason}"):
            XGBoostRuntime().load(path, ModelConfig())


def test_damaged_ubjson_lengths_are_refused(tmp_path: Path) -> None:
    whole = train(tmp_path / "whole.ubj", {"objective": "reg:squarederror"}, IRIS.data, IRIS.target).read_bytes()
    at = whole.index(b"split_conditions[$d#L") + len(b"split_conditions[$d#L")
    damaged = whole[:at] + (10**9).to_bytes(8, "big") + whole[at + 8 :]  # a billion floats, no bytes for them
    (tmp_path / "model.ubj").write_bytes(damaged)
    with pytest.raises(LoadError, match=r"^model\.ubj: not a complete UBJSON model .*4000000000 bytes needed"):
        XGBoostRuntime().load(tmp_path / "model.ubj", ModelConfig())


def test_ubjson_under_another_name_is_checked_and_loads(tmp_path: Path) -> None:
    train(tmp_path / "model.ubj", {"objective": "reg:squarederror"}, IRIS.data, IRIS.target)
    (tmp_path / "model.bin").write_bytes((tmp_path / "model.ubj").read_bytes()[:-1])
    with pytest.raises(LoadError, match="not a complete UBJSON model"):
        XGBoostRuntime().load(tmp_path / "model.bin", ModelConfig())
    (tmp_path / "model.bin").write_bytes((tmp_path / "model.ubj").read_bytes())
    with pytest.warns(UserWarning, match="Unknown file format"):  # XGBoost guesses the format from the content
        assert load(tmp_path / "model.bin")[1].inputs[0].shape == (-1, 4)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda tree: tree["left_children"].__setitem__(1, -8), "tree 0: a child link points outside the tree"),
        (lambda tree: tree["right_children"].__setitem__(0, 1), "tree 0: a node has two parents"),
        (lambda tree: tree["split_indices"].__setitem__(0, 7), r"tree 0: a split feature is outside \[0, 4\)"),
        (lambda tree: tree["parents"].__setitem__(2, 5), "tree 0: a parent link is wrong"),
        (lambda tree: tree.pop("parents"), "cannot read KeyError: 'parents'"),
    ],
    ids=["child-outside", "two-parents", "split-feature", "parent", "missing-array"],
)
def test_trees_that_would_crash_prediction_are_refused(tmp_path: Path, edit: Any, reason: str) -> None:
    """XGBoost loads these (it checks syntax, not trees), and crashes while loading or predicting."""
    path = train(tmp_path / "model.json", {"objective": "reg:squarederror"}, IRIS.data, IRIS.target)
    model = json.loads(path.read_text())
    edit(model["learner"]["gradient_booster"]["model"]["trees"][0])
    path.write_text(json.dumps(model))
    with pytest.raises(LoadError, match=rf"^model\.json: the XGBoost model is malformed: {reason}"):
        XGBoostRuntime().load(path, ModelConfig())


def test_categorical_and_dart_models_pass_the_checks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = np.c_[rng.integers(0, 10, 400), rng.normal(size=400)]
    train_set = xgb.DMatrix(data, data[:, 0] % 3 == 0, feature_types=["c", "q"], enable_categorical=True)
    params = {"objective": "binary:logistic", "max_cat_to_onehot": 1, "tree_method": "hist", "nthread": 1}
    xgb.train(params, train_set, 3).save_model(tmp_path / "cat.json")
    dart = train(
        tmp_path / "dart.ubj", {"booster": "dart", "objective": "binary:logistic"}, IRIS.data, IRIS.target == 2
    )
    for path, rows in ((tmp_path / "cat.json", data[:20].astype(np.float32)), (dart, X)):
        runtime, _ = load(path)
        expected = xgb.Booster(model_file=path).inplace_predict(rows)
        np.testing.assert_array_equal(runtime.predict({"input": rows})["probabilities"][:, 1], expected)


def test_a_linear_booster_is_refused(tmp_path: Path) -> None:
    path = train(tmp_path / "model.json", {"booster": "gblinear"}, IRIS.data, IRIS.target)
    with pytest.raises(LoadError, match="booster 'gblinear' is not supported"):
        XGBoostRuntime().load(path, ModelConfig())


def test_an_unsupported_objective_is_named(tmp_path: Path) -> None:
    labels = np.column_stack([IRIS.target == 0, IRIS.target == 2])  # multi-label: two binary targets
    xgb.XGBClassifier(n_estimators=2, tree_method="hist").fit(IRIS.data, labels).save_model(tmp_path / "model.ubj")
    with pytest.raises(LoadError, match=r"objective 'binary:logistic' with 2 targets is not supported"):
        XGBoostRuntime().load(tmp_path / "model.ubj", ModelConfig())


def test_missing_library_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xgboost", None)  # makes ``import xgboost`` raise ImportError
    with pytest.raises(LoadError, match=r"pip install 'modelserve\[xgboost\]'"):
        XGBoostRuntime().load(tmp_path / "model.ubj", ModelConfig())


def test_concurrent_predictions_match_sequential_ones(tmp_path: Path) -> None:
    runtime, _ = load(
        train(tmp_path / "model.ubj", {"objective": "multi:softprob", "num_class": 3}, IRIS.data, IRIS.target)
    )
    batches = [np.random.default_rng(i).uniform(0.1, 7.9, size=(1 + i % 7, 4)).astype(np.float32) for i in range(64)]
    expected = [runtime.predict({"input": b})["probabilities"] for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda b: runtime.predict({"input": b})["probabilities"], batches))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_the_module_name_does_not_shadow_the_library() -> None:
    from modelserve.runtimes import xgboost as runtime_module

    assert runtime_module.__name__ == "modelserve.runtimes.xgboost"
    assert xgb.__name__ == "xgboost" and hasattr(xgb, "Booster")
