"""The reference profile: feature naming, categorical detection, the JSON round trip, live batches."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modelserve.errors import ConfigError
from modelserve.monitoring.profile import CategoricalSummary, NumericSummary, Profile, build_profile

N = 3000


def training(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    inputs = {
        "x": rng.normal(size=(N, 3)).astype(np.float32),
        "income": rng.lognormal(10, 1, size=N),
        "grade": rng.integers(1, 6, size=N),  # 5 levels: categorical
        "age": rng.integers(18, 90, size=N),  # 72 levels: numeric
        "city": rng.choice(np.array([b"paris", b"rome", "zürich".encode()], dtype=object), size=N),
        "member": rng.random(N) < 0.3,
    }
    outputs = {"probabilities": rng.dirichlet([1, 1, 1], size=N), "label": rng.integers(0, 3, size=N)}
    return inputs, outputs


@pytest.fixture(scope="module")
def profile() -> Profile:
    inputs, outputs = training()
    return build_profile(inputs, outputs, feature_names={"x": ["height", "width", "depth"]}, sample_rows=500)


def test_features_are_named_after_tensors_and_columns(profile: Profile) -> None:
    assert profile.feature_names == ("height", "width", "depth", "income", "grade", "age", "city", "member")
    assert profile.input_names == ("x", "income", "grade", "age", "city", "member")
    assert [f.name for f in profile.outputs] == ["probabilities[0]", "probabilities[1]", "probabilities[2]", "label"]
    assert profile.output_names == ("probabilities", "label")
    assert profile.rows == N
    assert [(f.tensor, f.column) for f in profile.inputs[:4]] == [("x", 0), ("x", 1), ("x", 2), ("income", None)]


def test_categorical_detection(profile: Profile) -> None:
    kinds = {f.name: f.kind for f in profile.inputs + profile.outputs}
    assert kinds == {
        "height": "numeric",
        "width": "numeric",
        "depth": "numeric",
        "income": "numeric",
        "grade": "categorical",  # integer, 5 distinct values
        "age": "numeric",  # integer, 72 distinct values
        "city": "categorical",  # BYTES
        "member": "categorical",  # bool
        "probabilities[0]": "numeric",
        "probabilities[1]": "numeric",
        "probabilities[2]": "numeric",
        "label": "categorical",  # class labels
    }
    city = next(f for f in profile.inputs if f.name == "city").summary
    assert isinstance(city, CategoricalSummary)
    assert city.categories == ("paris", "rome", "zürich")  # bytes decoded as UTF-8
    assert sum(city.frequencies) == pytest.approx(1.0)
    member = next(f for f in profile.inputs if f.name == "member").summary
    assert isinstance(member, CategoricalSummary) and member.categories == ("False", "True")
    assert member.frequencies[1] == pytest.approx(0.3, abs=0.03)


def test_categorical_by_name_of_feature_or_tensor() -> None:
    inputs, _ = training()
    p = build_profile(inputs, categorical=("age", "x"))
    kinds = {f.name: f.kind for f in p.inputs}
    assert kinds["age"] == "categorical"
    assert kinds["x[0]"] == kinds["x[1]"] == kinds["x[2]"] == "categorical"
    assert kinds["income"] == "numeric"


def test_numeric_summary(profile: Profile) -> None:
    income = next(f for f in profile.inputs if f.name == "income").summary
    assert isinstance(income, NumericSummary)
    assert len(income.sample) == 500
    assert len(income.edges) == 9 and list(income.edges) == sorted(income.edges)  # 10 bins
    assert income.fractions == pytest.approx([0.1] * 10, abs=1e-3)
    values = training()[0]["income"]
    assert income.mean == pytest.approx(values.mean()) and income.std == pytest.approx(values.std())


def test_multivariate_part_covers_the_numeric_inputs(profile: Profile) -> None:
    mv = profile.multivariate
    assert mv is not None
    assert profile.numeric_names == ("height", "width", "depth", "income", "age")
    assert len(mv.mean) == 5 and len(mv.precision) == 5
    assert len(mv.reference) == 500 and all(len(r) == 5 for r in mv.reference)
    distances = [d for _, d in mv.quantiles]
    assert distances == sorted(distances)


def test_round_trip_through_dict_and_json(profile: Profile) -> None:
    doc = profile.to_dict()
    assert Profile.from_dict(doc) == profile
    text = json.dumps(doc, allow_nan=False)  # strict JSON: no NaN or Infinity
    again = Profile.from_dict(json.loads(text))
    assert again == profile
    assert again.to_dict() == doc


def test_the_same_seed_gives_the_same_profile() -> None:
    inputs, outputs = training()
    assert build_profile(inputs, outputs, seed=3) == build_profile(inputs, outputs, seed=3)
    assert build_profile(inputs, seed=3) != build_profile(inputs, seed=4)


def test_small_training_sets_keep_every_row() -> None:
    rng = np.random.default_rng(1)
    p = build_profile({"x": rng.normal(size=(40, 2))})
    assert p.multivariate is not None and len(p.multivariate.reference) == 40
    summary = p.inputs[0].summary
    assert isinstance(summary, NumericSummary) and len(summary.sample) == 40


def test_a_categorical_only_profile_has_no_multivariate_part() -> None:
    p = build_profile({"colour": np.array(["red", "green", "red", "blue"])})
    assert p.multivariate is None and p.numeric_names == ()
    assert Profile.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    ("inputs", "kwargs", "message"),
    [
        (
            {"image": np.zeros((10, 28, 28))},
            {},
            "input 'image' has shape [N, 28, 28]: drift monitoring supports tabular inputs, [N] or [N, k]",
        ),
        ({"x": np.zeros((10, 0))}, {}, "input 'x' has shape [N, 0]"),
        ({"z": np.zeros(10, dtype=np.complex128)}, {}, "feature 'z' has dtype complex128"),
        ({"x": np.array([1.0, np.nan, 2.0])}, {}, "feature 'x' has 1 non-finite values"),
        ({"a": np.zeros(10), "b": np.zeros(11)}, {}, "different row counts [10, 11]"),
        ({"x": np.zeros((10, 2))}, {"feature_names": {"x": ["a"]}}, "feature_names['x'] has 1 names, expected 2"),
        ({"x": np.zeros((10, 2))}, {"feature_names": {"y": ["a"]}}, "feature_names names tensor 'y'"),
        ({"x": np.zeros((10, 2))}, {"categorical": ["nope"]}, "categorical names 'nope'"),
        ({"x": np.zeros(1)}, {}, "got 1 training rows, expected at least 2"),
        ({"x": np.zeros(10)}, {"bins": 0}, "bins=0"),
    ],
)
def test_bad_training_data_is_refused(inputs: dict[str, np.ndarray], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_profile(inputs, **kwargs)
    assert message in str(err.value)


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is KeyError:
        del node[last]
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", 2, "profile format: got 2, expected 1"),
        ("format", KeyError, "profile format: got None"),
        ("rows", "many", "profile rows: got 'many'"),
        ("rows", 0, "got 0 rows"),
        ("inputs", {}, "profile inputs: got dict, expected a list"),
        ("inputs", [], "0 input features"),
        ("inputs.0", "x", "profile inputs entry: got str, expected an object"),
        ("inputs.0.kind", "ordinal", "kind: got 'ordinal'"),
        ("inputs.0.name", 3, "name and tensor must be strings"),
        ("inputs.0.column", -1, "column -1"),
        ("inputs.0.column", 7, "columns [7, 1, 2], expected [null] or 0..k-1"),
        ("inputs.0.sample", [1.0, "two"], "sample: got 'two', expected a finite number"),
        ("inputs.0.mean", float("nan"), "mean: got nan"),
        ("inputs.0.fractions", [1.0], "one more fraction than edges"),
        ("inputs.0.edges", [3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0], "increasing edges"),
        ("inputs.1.name", "height", "feature names repeat"),
        ("inputs.4.categories", [1, 2, 3, 4, 5], "expected strings"),
        ("inputs.4.frequencies", [0.5, 0.5, 0.5, 0.5, 0.5], "must be >= 0 and sum to 1"),
        ("inputs.4.categories", ["1"], "expected distinct categories, one frequency each"),
        ("multivariate", None, "5 numeric input features but multivariate is None"),
        ("multivariate.mean", [0.0], "mean and precision must be 5 wide"),
        ("multivariate.precision", "I", "got str, expected a list"),
        ("multivariate.reference", [[1.0, 2.0]], "expected rows of 5 values"),
        ("multivariate.quantiles", [[0.99, 3.0], [0.9, 2.0]], "expected increasing values in (0, 1)"),
        ("multivariate.quantiles", [[0.99]], "expected [quantile, distance]"),
    ],
)
def test_malformed_documents_are_refused(profile: Profile, path: str, value: Any, message: str) -> None:
    doc = json.loads(json.dumps(profile.to_dict()))
    _set(doc, path, value)
    with pytest.raises(ConfigError) as err:
        Profile.from_dict(doc)
    assert message in str(err.value)


def test_a_document_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="profile: got list, expected an object"):
        Profile.from_dict([])  # type: ignore[arg-type]


def test_features_of_a_live_batch(profile: Profile) -> None:
    batch = {
        "x": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32),
        "income": np.array([[1000.0], [2000.0]]),  # [N, 1] is accepted for a [N] input
        "grade": np.array([3, 9]),
        "age": np.array([30, 40]),
        "city": np.array([b"rome", b"oslo"], dtype=object),
        "member": np.array([True, False]),
        "ignored": np.zeros(7),  # tensors the profile does not know are ignored
    }
    matrix, cats = profile.features(batch)
    assert matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, [[1, 2, 3, 1000, 30], [4, 5, 6, 2000, 40]])
    assert {k: v.tolist() for k, v in cats.items()} == {
        "grade": ["3", "9"],
        "city": ["rome", "oslo"],
        "member": ["True", "False"],
    }


def test_output_features_of_a_live_batch(profile: Profile) -> None:
    matrix, cats = profile.output_features({"probabilities": np.eye(3)[:2], "label": np.array([0, 1])})
    np.testing.assert_array_equal(matrix, np.eye(3)[:2])
    assert cats["label"].tolist() == ["0", "1"]


def test_live_batches_that_do_not_fit_are_refused(profile: Profile) -> None:
    inputs, _ = training()
    batch = {name: values[:4] for name, values in inputs.items()}
    with pytest.raises(ConfigError, match=r"input 'age' is missing from the batch: the profile needs \['x', "):
        profile.features({k: v for k, v in batch.items() if k != "age"})
    with pytest.raises(ConfigError, match=r"input 'x' has shape \[4, 2\]: the profile expects \[N, 3\]"):
        profile.features({**batch, "x": batch["x"][:, :2]})
    with pytest.raises(ConfigError, match=r"input 'income' has shape \[4, 2\]: the profile expects \[N\]"):
        profile.features({**batch, "income": np.zeros((4, 2))})
    with pytest.raises(ConfigError, match=r"different row counts"):
        profile.features({**batch, "age": batch["age"][:3]})
    with pytest.raises(ConfigError, match="output 'label' is missing"):
        profile.output_features({"probabilities": np.eye(3)})


def test_numeric_features_alone(profile: Profile) -> None:
    inputs, _ = training()
    batch = {name: values[:5] for name, values in inputs.items()}
    np.testing.assert_array_equal(profile.numeric_features(batch), profile.features(batch)[0])
