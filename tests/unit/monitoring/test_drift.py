"""Drift detection: no alarms under the null, the right feature named under a shift."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import pytest

from modelserve.errors import ConfigError, Unavailable
from modelserve.monitoring.drift import DriftDetector, DriftReport, DriftSettings
from modelserve.monitoring.profile import Profile, build_profile

COV = np.full((5, 5), 0.3) + 0.7 * np.eye(5)  # five N(0, 1) features, pairwise correlation 0.3
LEVELS = np.array([b"a", b"b", b"c", b"d"], dtype=object)
PROBS = (0.4, 0.3, 0.2, 0.1)
NUMERIC = ("x[0]", "x[1]", "x[2]", "x[3]", "x[4]")


def draw(
    rng: np.random.Generator, n: int, shift: np.ndarray | None = None, probs: tuple[float, ...] = PROBS
) -> dict[str, np.ndarray]:
    x = rng.multivariate_normal(np.zeros(5), COV, size=n) + (0 if shift is None else shift)
    return {"x": x, "c": rng.choice(LEVELS, size=n, p=probs)}


def predict(inputs: dict[str, np.ndarray], bias: float = 0.0) -> dict[str, np.ndarray]:
    """The monitored model: a score and its label."""
    x = inputs["x"]
    score = 1 / (1 + np.exp(-(x[:, 0] - x[:, 1] + bias)))
    return {"score": score, "label": (score > 0.5).astype(np.int64)}


@pytest.fixture(scope="module")
def profile() -> Profile:
    reference = draw(np.random.default_rng(0), 20_000)
    return build_profile(reference, predict(reference))


def first_check(detector: DriftDetector, rng: np.random.Generator, **shift: Any) -> tuple[int, DriftReport]:
    """Feed batches of 10 rows until a check is due; return the rows fed and that check's report."""
    while not detector.due():
        batch = draw(rng, 10, **shift)
        detector.add(batch, predict(batch))
    return detector.rows, detector.check()


def test_settings_are_validated() -> None:
    assert DriftSettings().window == 500
    for bad, message in [
        ({"window": 1}, "drift.window must be >= 2, got 1"),
        ({"min_rows": 600}, "drift.min_rows must be between 2 and window (500), got 600"),
        ({"min_rows": 1}, "got 1"),
        ({"check_every": 0}, "drift.check_every must be >= 1, got 0"),
        ({"p_value": 0.0}, "drift.p_value must be in (0, 1), got 0.0"),
        ({"p_value": 1.5}, "got 1.5"),
        ({"psi_threshold": -1.0}, "drift.psi_threshold must be a positive number, got -1.0"),
        ({"psi_threshold": float("nan")}, "got nan"),
        ({"outlier_quantile": 1.0}, "drift.outlier_quantile must be in (0, 1), got 1.0"),
    ]:
        with pytest.raises(ConfigError) as err:
            DriftSettings(**bad)
        assert message in str(err.value)


def test_an_outlier_quantile_the_profile_lacks_is_refused_up_front(profile: Profile) -> None:
    with pytest.raises(ConfigError, match=r"outlier quantile 0\.3"):
        DriftDetector(profile, DriftSettings(outlier_quantile=0.3))


def test_checks_are_due_after_min_rows_then_every_check_every_rows(profile: Profile) -> None:
    detector = DriftDetector(profile, DriftSettings(window=100, min_rows=50, check_every=30, multivariate=False))
    rng = np.random.default_rng(1)
    detector.add(draw(rng, 49))
    assert not detector.due()
    detector.add(draw(rng, 1))
    assert detector.due()
    assert detector.check().rows == 50
    assert not detector.due()
    detector.add(draw(rng, 29))
    assert not detector.due()
    detector.add(draw(rng, 1))
    assert detector.due()
    detector.add(draw(rng, 200))  # more than the window: only the last 100 rows are kept
    assert detector.rows == 280 and detector.check().rows == 100


def test_the_window_holds_only_the_latest_rows(profile: Profile) -> None:
    settings = DriftSettings(multivariate=False)
    rng = np.random.default_rng(2)
    far = np.array([5.0, 0, 0, 0, 0])
    # batches of odd sizes wrap the ring buffer at odd places; the shifted rows all leave the window
    detector = DriftDetector(profile, settings)
    detector.add(draw(rng, 1000, shift=far))
    for size in [1, 7, 33, 150, 1, 1, 99, 208]:
        detector.add(draw(rng, size))
    assert detector.check().drifted_features == ()
    # one batch larger than the window: its last 500 rows are the window
    detector = DriftDetector(profile, settings)
    batch = draw(rng, 1200)
    batch["x"][:700] += far
    detector.add(batch)
    assert detector.check().drifted_features == ()
    detector.add(draw(rng, 1, shift=far))  # and a single shifted row does not make drift
    assert detector.check().drifted_features == ()


def test_no_alarm_under_the_null(profile: Profile) -> None:
    # 20 consecutive non-overlapping windows of 500 rows (each check sees only fresh rows) from the
    # training distribution, inputs and outputs, all tests on. Each check alarms with probability
    # at most p_value = 0.01, so 20 checks stay silent with probability about 0.82; this seed does.
    detector = DriftDetector(profile, DriftSettings(p_value=0.01), seed=0)
    rng = np.random.default_rng(3)
    reports = []
    for _ in range(20):
        for _ in range(50):
            batch = draw(rng, 10)
            detector.add(batch, predict(batch))
        reports.append(detector.check())
    assert [r.drift for r in reports] == [False] * 20
    assert all(r.rows == 500 and r.output_rows == 500 and r.multivariate is not None for r in reports)
    # the p-values are spread out, not piled up near 0 or 1
    ps = [f.p_value for r in reports for f in r.features.values()]
    assert 0.3 < float(np.mean(ps)) < 0.7
    assert max(f.psi or 0.0 for r in reports for f in r.features.values()) < 0.1


def test_a_mean_shift_of_half_a_standard_deviation_is_named_at_the_first_check(profile: Profile) -> None:
    # the first check comes after min_rows = 200 rows; KS on 200 rows against the 2000-row sample
    # sees a 0.5 sd shift (expected statistic 0.20, critical value about 0.15)
    detector = DriftDetector(profile, DriftSettings(), seed=0)
    rows, report = first_check(detector, np.random.default_rng(4), shift=np.array([0, 0, 0.5, 0, 0]))
    assert rows == 200
    assert report.drift and report.drifted_features == ("x[2]",)
    x2 = report.features["x[2]"]
    assert x2.drifted and x2.test == "ks" and x2.kind == "numeric" and x2.adjusted_p_value < 0.01
    assert not any(report.features[name].drifted for name in ("x[0]", "x[1]", "x[3]", "x[4]", "c"))


def test_a_changed_category_frequency_is_named_at_the_first_check(profile: Profile) -> None:
    detector = DriftDetector(profile, DriftSettings(), seed=0)
    rows, report = first_check(detector, np.random.default_rng(5), probs=(0.3, 0.25, 0.2, 0.25))
    assert rows == 200
    assert report.drifted_features == ("c",)
    c = report.features["c"]
    assert c.test == "chi2" and c.kind == "categorical" and c.psi is None and c.adjusted_p_value < 0.01
    assert report.drifted_outputs == ()


def test_unseen_categories_pool_into_other(profile: Profile) -> None:
    rng = np.random.default_rng(6)
    batch = draw(rng, 500)
    batch["c"][:100] = b"e"  # a new category takes 20% of traffic
    detector = DriftDetector(profile, DriftSettings(multivariate=False))
    detector.add(batch)
    assert detector.check().drifted_features == ("c",)
    batch = draw(rng, 500)
    batch["c"][0] = b"typo"  # one stray value is no drift
    detector = DriftDetector(profile, DriftSettings(multivariate=False))
    detector.add(batch)
    report = detector.check()
    assert report.drifted_features == () and report.features["c"].p_value > 0.01


def test_a_correlation_flip_is_seen_only_by_the_multivariate_test() -> None:
    # x[0] and x[1] are N(0, 1) with correlation +0.8 in training and -0.8 live: the marginals are
    # unchanged, so no univariate test can see it, but the classifier (with product features) can
    def rows(rng: np.random.Generator, n: int, rho: float) -> dict[str, np.ndarray]:
        cov = np.eye(4)
        cov[0, 1] = cov[1, 0] = rho
        return {"x": rng.multivariate_normal(np.zeros(4), cov, size=n)}

    profile = build_profile(rows(np.random.default_rng(7), 20_000, 0.8))
    detector = DriftDetector(profile, DriftSettings(), seed=0)
    detector.add(rows(np.random.default_rng(8), 500, -0.8))
    report = detector.check()
    assert report.drifted_features == ()
    assert report.multivariate is not None and report.multivariate.drifted
    assert report.multivariate.auc > 0.7 and report.multivariate.adjusted_p_value < 0.01
    assert report.drift
    # the same window with the multivariate test off: nothing to see
    detector = DriftDetector(profile, DriftSettings(multivariate=False), seed=0)
    detector.add(rows(np.random.default_rng(8), 500, -0.8))
    report = detector.check()
    assert report.multivariate is None and not report.drift


def test_prediction_drift_on_a_shifted_output(profile: Profile) -> None:
    # the inputs are as in training, but the model answers differently (a new bias)
    detector = DriftDetector(profile, DriftSettings(), seed=0)
    rng = np.random.default_rng(9)
    while not detector.due():
        batch = draw(rng, 10)
        detector.add(batch, predict(batch, bias=0.5))
    report = detector.check()
    assert report.drifted_features == ()
    assert set(report.drifted_outputs) == {"score", "label"}
    assert report.outputs["score"].test == "ks" and report.outputs["label"].test == "chi2"
    assert report.drift


def test_a_feature_going_missing_is_drift(profile: Profile) -> None:
    batch = draw(np.random.default_rng(10), 500)
    batch["x"][::3, 4] = np.nan  # NaN counts as beyond every reference value
    detector = DriftDetector(profile, DriftSettings())
    # rows with NaN are outliers (167 of them), beside about 0.5 true outliers at q = 0.999
    assert 167 <= detector.add(batch) <= 170
    report = detector.check()
    assert report.drifted_features == ("x[4]",)
    assert report.multivariate is not None  # on the rows without NaN


def test_the_report_is_json(profile: Profile) -> None:
    detector = DriftDetector(profile, DriftSettings())
    batch = draw(np.random.default_rng(11), 300)
    detector.add(batch, predict(batch))
    doc = json.loads(json.dumps(detector.check().to_dict(), allow_nan=False))
    assert set(doc) == {
        "rows",
        "output_rows",
        "features",
        "outputs",
        "multivariate",
        "drifted_features",
        "drifted_outputs",
        "drift",
    }
    assert list(doc["features"]) == [*NUMERIC, "c"]  # numeric features first, then categorical
    assert list(doc["outputs"]) == ["score", "label"]
    assert set(doc["features"]["x[0]"]) == {
        "kind",
        "test",
        "statistic",
        "p_value",
        "adjusted_p_value",
        "psi",
        "drifted",
    }
    assert set(doc["multivariate"]) == {"auc", "p_value", "adjusted_p_value", "drifted"}
    for f in [*doc["features"].values(), *doc["outputs"].values()]:
        assert 0 <= f["p_value"] <= f["adjusted_p_value"] <= 1
    assert doc["rows"] == doc["output_rows"] == 300


def test_outliers_are_counted(profile: Profile) -> None:
    detector = DriftDetector(profile, DriftSettings(outlier_quantile=0.999))
    far = {"x": np.full((3, 5), 6.0) * [1, -1, 1, -1, 1], "c": LEVELS[:3]}
    assert detector.add(far) == 3
    assert detector.add({"x": np.zeros((1, 5)), "c": LEVELS[:1]}) == 0
    assert detector.add({"x": far["x"][:1], "c": LEVELS[:1]}) == 1
    assert (detector.rows, detector.outliers) == (5, 4)


def test_outputs_feed_prediction_drift_only_when_complete(profile: Profile) -> None:
    detector = DriftDetector(profile, DriftSettings(multivariate=False))
    batch = draw(np.random.default_rng(12), 100)
    detector.add(batch, {"label": predict(batch)["label"]})  # a client asked for the label only
    detector.add(batch)
    report = detector.check()
    assert (report.rows, report.output_rows) == (200, 0) and dict(report.outputs) == {}


def test_a_batch_that_does_not_fit_changes_nothing(profile: Profile) -> None:
    detector = DriftDetector(profile, DriftSettings())
    batch = draw(np.random.default_rng(13), 10)
    with pytest.raises(ConfigError, match=r"input 'x' has shape \[10, 4\]"):
        detector.add({**batch, "x": batch["x"][:, :4]})
    with pytest.raises(ConfigError, match=r"output 'score' has shape \[10, 2\]"):
        detector.add(batch, {"score": np.zeros((10, 2)), "label": np.zeros(10)})
    assert detector.rows == 0
    with pytest.raises(Unavailable, match="needs at least 2 rows in the window, it has 0"):
        detector.check()


def test_a_categorical_only_profile(profile: Profile) -> None:
    rng = np.random.default_rng(14)
    only = build_profile({"c": rng.choice(LEVELS, size=5000, p=PROBS)})
    detector = DriftDetector(only, DriftSettings())
    assert detector.add({"c": rng.choice(LEVELS, size=300, p=(0.1, 0.2, 0.3, 0.4))}) == 0
    report = detector.check()
    assert report.multivariate is None and report.drifted_features == ("c",)


def test_without_the_monitoring_extra_a_check_names_it(profile: Profile, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = DriftDetector(profile, DriftSettings())  # building and feeding need numpy only
    detector.add(draw(np.random.default_rng(15), 10))
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # import scipy.stats now raises ImportError
    with pytest.raises(ConfigError, match=r"drift checks need scipy.stats: pip install 'modelserve\[monitoring\]'"):
        detector.check()
