"""LightGBMRuntime: signatures by objective, threads, width checks, empty batches, damaged files."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from modelserve.config.model import ModelConfig
from modelserve.core.signature import adapt
from modelserve.core.validation import Plan
from modelserve.errors import InvalidInput, LoadError
from modelserve.runtimes.lightgbm import LightGBMRuntime
from modelserve.types import InferRequest, Signature, Tensor

IRIS = load_iris()
DIABETES = load_diabetes()
X = np.random.default_rng(3).uniform(0.1, 7.9, size=(16, 4))


def train(path: Path, params: dict[str, Any], data: Any, label: Any, rounds: int = 3, **dataset: Any) -> Path:
    base = {"verbose": -1, "num_leaves": 5, "num_threads": 1, "min_data_in_leaf": 5}
    lgb.train({**base, **params}, lgb.Dataset(data, label, **dataset), rounds).save_model(path)
    return path


def iris(path: Path) -> Path:
    return train(path, {"objective": "multiclass", "num_class": 3}, IRIS.data, IRIS.target)


def load(path: Path, threads: int = 1) -> tuple[LightGBMRuntime, Signature]:
    runtime = LightGBMRuntime()
    return runtime, runtime.load(path, ModelConfig(threads=threads))


def specs(signature: Signature) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(t.name, t.datatype, t.shape) for t in (*signature.inputs, *signature.outputs)]


@pytest.mark.parametrize("threads", [1, 3])
def test_num_threads_comes_from_the_model_config(tmp_path: Path, threads: int) -> None:
    path = train(tmp_path / "model.txt", {"num_threads": 2}, DIABETES.data, DIABETES.target)
    runtime, _ = load(path, threads)
    assert runtime.model.params["num_threads"] == 2  # what training saved, which prediction must not use
    calls: list[dict[str, Any]] = []
    native_predict = runtime.model.predict

    def spy(data: np.ndarray, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return native_predict(data, **kwargs)

    runtime.model.predict = spy
    runtime.predict({"input": DIABETES.data[:3]})
    assert calls == [{"num_threads": threads}]


def test_sklearn_classifier_serves_labels_and_probabilities(tmp_path: Path) -> None:
    classifier = lgb.LGBMClassifier(n_estimators=5, num_leaves=5, n_jobs=1, verbose=-1).fit(IRIS.data, IRIS.target)
    classifier.booster_.save_model(tmp_path / "model.txt")
    runtime, signature = load(tmp_path / "model.txt")
    assert specs(signature) == [
        ("input", "FP64", (-1, 4)),
        ("label", "INT64", (-1,)),
        ("probabilities", "FP64", (-1, 3)),
    ]
    assert signature.inputs[0].accepts == {"FP32"}
    out = runtime.predict({"input": X})
    np.testing.assert_array_equal(out["probabilities"], classifier.predict_proba(X))
    np.testing.assert_array_equal(out["label"], classifier.predict(X))
    assert out["label"].dtype == np.int64


def test_binary_classifier_gets_two_columns_like_scikit_learn(tmp_path: Path) -> None:
    classifier = lgb.LGBMClassifier(n_estimators=5, num_leaves=5, n_jobs=1, verbose=-1)
    classifier.fit(IRIS.data, IRIS.target == 2)
    classifier.booster_.save_model(tmp_path / "model.txt")
    runtime, signature = load(tmp_path / "model.txt")
    assert signature.outputs[1].shape == (-1, 2)
    out = runtime.predict({"input": X})
    np.testing.assert_array_equal(out["probabilities"], classifier.predict_proba(X))
    np.testing.assert_array_equal(out["label"], classifier.predict(X).astype(np.int64))


def test_regressor_equals_the_booster_on_fp32_requests_widened_by_the_server(tmp_path: Path) -> None:
    path = train(tmp_path / "model.txt", {"objective": "regression"}, DIABETES.data, DIABETES.target)
    runtime, signature = load(path)
    assert specs(signature) == [("input", "FP64", (-1, 10)), ("predictions", "FP64", (-1,))]
    rows = DIABETES.data[:8].astype(np.float32)
    feeds = Plan("lgb version 1", adapt(signature, None)).inputs(InferRequest(inputs=[Tensor("input", "FP32", rows)]))
    assert feeds["input"].dtype == np.float64
    expected = lgb.Booster(model_file=path).predict(rows)  # LightGBM reads float32 rows as they are
    np.testing.assert_array_equal(runtime.predict(feeds)["predictions"], expected)


def test_feature_names_and_count_come_from_the_booster(tmp_path: Path) -> None:
    names = list(DIABETES.feature_names)
    runtime, signature = load(train(tmp_path / "model.txt", {}, DIABETES.data, DIABETES.target, feature_name=names))
    assert runtime.feature_names == tuple(names)
    assert signature.inputs[0].shape == (-1, 10)


def test_server_validation_rejects_a_wrong_width(tmp_path: Path) -> None:
    _, signature = load(iris(tmp_path / "model.txt"))
    plan = Plan("lgb version 1", adapt(signature, None))
    with pytest.raises(InvalidInput, match=r"got shape \[2, 5\], expected \[-1, 4\]"):
        plan.inputs(InferRequest(inputs=[Tensor("input", "FP64", np.zeros((2, 5)))]))


@pytest.mark.parametrize(
    ("params", "names", "shapes"),
    [
        ({"objective": "multiclass", "num_class": 3}, ("label", "probabilities"), [(0,), (0, 3)]),
        ({"objective": "binary"}, ("label", "probabilities"), [(0,), (0, 2)]),
        ({"objective": "regression"}, ("predictions",), [(0,)]),
    ],
    ids=["multiclass", "binary", "regression"],
)
def test_empty_batch_gives_empty_outputs_of_the_signature_shape(
    tmp_path: Path, params: dict[str, Any], names: tuple[str, ...], shapes: list[tuple[int, ...]]
) -> None:
    label = IRIS.target if "num_class" in params else IRIS.target == 2
    runtime, signature = load(train(tmp_path / "model.txt", params, IRIS.data, label))
    out = runtime.predict({"input": np.zeros((0, 4))})
    assert tuple(out) == names
    assert [v.shape for v in out.values()] == shapes
    assert [v.dtype.name for v in out.values()] == [
        t.datatype.replace("FP", "float").lower() for t in signature.outputs
    ]


def test_a_custom_objective_is_refused_by_name(tmp_path: Path) -> None:
    def squared(preds: np.ndarray, data: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
        return preds - data.get_label(), np.ones_like(preds)

    path = train(tmp_path / "model.txt", {"objective": squared}, DIABETES.data, DIABETES.target)
    with pytest.raises(LoadError, match=r"^model\.txt: the LightGBM model has no objective"):
        LightGBMRuntime().load(path, ModelConfig())


def test_garbage_gives_load_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.txt"
    for content in (b"corrupt\x00this is not a model artifact\n", b"", b"\xff\xfe"):
        path.write_bytes(content)
        with pytest.raises(LoadError, match=r"^model\.txt: not a LightGBM text model"):
            LightGBMRuntime().load(path, ModelConfig())


def test_lightgbm_reports_a_bad_header_itself(tmp_path: Path) -> None:
    path = tmp_path / "model.txt"
    path.write_text("tree\nversion=v4\nnum_class=1\n")
    with pytest.raises(LoadError, match=r"^model\.txt: LightGBM cannot load it: .*label index"):
        LightGBMRuntime().load(path, ModelConfig())


def test_truncation_is_refused_or_harmless_never_a_crash(tmp_path: Path) -> None:
    """LightGBM itself would read past the end of these files (it trusts tree_sizes) and crash."""
    whole = iris(tmp_path / "whole.txt").read_bytes()
    end_of_trees = whole.index(b"end of trees")
    opened = whole.index(b"\nparameters:") + len(b"\nparameters:")
    closed = whole.index(b"\nend of parameters") + len(b"\nend of parameters")
    path = tmp_path / "model.txt"
    for cut in range(20, len(whole), max(1, len(whole) // 200)):
        path.write_bytes(whole[:cut])
        if cut < end_of_trees:
            with pytest.raises(LoadError, match=r"^model\.txt: "):
                LightGBMRuntime().load(path, ModelConfig())
        elif opened <= cut < closed:
            with pytest.raises(LoadError, match=r"^model\.txt: the LightGBM model's 'parameters:' section has no end"):
                LightGBMRuntime().load(path, ModelConfig())
        else:  # every tree is there; importances and parameters only describe the training
            assert LightGBMRuntime().load(path, ModelConfig()).inputs[0].shape == (-1, 4)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("num_class=3", "num_class=3\n\x00", "NUL"),  # LightGBM would loop forever
        ("num_tree_per_iteration=3", "num_tree_per_iteration=0", "num_tree_per_iteration='0'"),  # would divide by 0
        ("left_child=1 ", "left_child=1:", "tree 0 .* malformed"),  # would loop forever in predict
        ("split_feature=2", "split_feature=9", r"split_feature is outside \[0, 4\)"),  # out of bounds in predict
        ("num_leaves=", "num_lXaves=", "tree 0 .* malformed"),  # would abort in its parallel tree parser
        ("[num_leaves: 5]", "[num_leaves:\n5]", "malformed parameter line"),  # would crash reading parameters
        ("end of parameters", "", "'parameters:' section has no end"),
    ],
    ids=["nul", "zero-trees-per-iteration", "child-link", "split-feature", "tree-key", "parameter", "unclosed"],
)
def test_damage_that_would_crash_lightgbm_is_refused(tmp_path: Path, old: str, new: str, reason: str) -> None:
    text = iris(tmp_path / "whole.txt").read_text()
    assert old in text
    (tmp_path / "model.txt").write_text(text.replace(old, new, 1))
    with pytest.raises(LoadError, match=rf"^model\.txt: .*{reason}"):
        LightGBMRuntime().load(tmp_path / "model.txt", ModelConfig())


def test_categorical_and_linear_trees_pass_the_checks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = np.c_[rng.integers(0, 12, 600), rng.normal(size=(600, 2))]
    label = (data[:, 0] % 3 == 0) * 2.0 + data[:, 1]
    categorical = train(tmp_path / "cat.txt", {"max_cat_to_onehot": 2}, data, label, 5, categorical_feature=[0])
    linear = train(tmp_path / "linear.txt", {"linear_tree": True}, data[:, 1:], label, 5)
    for path, rows in ((categorical, data[:20]), (linear, data[:20, 1:])):
        runtime, _ = load(path)
        expected = lgb.Booster(model_file=path).predict(rows)
        np.testing.assert_array_equal(runtime.predict({"input": rows})["predictions"], expected)


def test_missing_library_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # makes ``import lightgbm`` raise ImportError
    with pytest.raises(LoadError, match=r"pip install 'modelserve\[lightgbm\]'"):
        LightGBMRuntime().load(tmp_path / "model.txt", ModelConfig())


def test_concurrent_predictions_match_sequential_ones(tmp_path: Path) -> None:
    runtime, _ = load(iris(tmp_path / "model.txt"), threads=2)
    batches = [np.random.default_rng(i).uniform(0.1, 7.9, size=(1 + i % 7, 4)) for i in range(64)]
    expected = [runtime.predict({"input": b})["probabilities"] for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda b: runtime.predict({"input": b})["probabilities"], batches))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)
