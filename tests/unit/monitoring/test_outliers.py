"""Outlier scores: Mahalanobis distances and empirical thresholds from the profile."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.errors import ConfigError
from modelserve.monitoring.outliers import OutlierScorer
from modelserve.monitoring.profile import Profile, build_profile

COV = np.array(
    [
        [1.0, 0.6, 0.0, 0.0, 0.2],
        [0.6, 1.0, 0.3, 0.0, 0.0],
        [0.0, 0.3, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0, -0.4],
        [0.2, 0.0, 0.0, -0.4, 1.0],
    ]
)
SCALE = np.array([1.0, 10.0, 0.1, 3.0, 100.0])  # features of very different units
MEAN = np.array([0.0, 50.0, -1.0, 7.0, 1000.0])


def draw(rng: np.random.Generator, n: int) -> np.ndarray:
    return MEAN + rng.multivariate_normal(np.zeros(5), COV, size=n) * SCALE


@pytest.fixture(scope="module")
def profile() -> Profile:
    return build_profile({"x": draw(np.random.default_rng(0), 50_000), "tag": np.zeros(50_000, dtype=np.int64)})


@pytest.fixture(scope="module")
def scorer(profile: Profile) -> OutlierScorer:
    return OutlierScorer(profile)


def test_scores_are_mahalanobis_distances(scorer: OutlierScorer) -> None:
    rows = draw(np.random.default_rng(1), 5)
    covariance = COV * np.outer(SCALE, SCALE)
    inverse = np.linalg.inv(covariance)
    expected = [np.sqrt((r - MEAN) @ inverse @ (r - MEAN)) for r in rows]
    # the profile's estimates of mean and covariance come from 50 000 rows: close, not equal
    np.testing.assert_allclose(scorer.scores({"x": rows, "tag": np.zeros(5)}), expected, rtol=0.05, atol=0.05)


def test_one_row_scores_like_a_batch(scorer: OutlierScorer) -> None:
    rows = draw(np.random.default_rng(2), 4)
    batch = scorer.scores({"x": rows, "tag": np.zeros(4)})
    single = [scorer.scores({"x": rows[i : i + 1], "tag": np.zeros(1)})[0] for i in range(4)]
    np.testing.assert_allclose(single, batch, rtol=1e-12)
    assert scorer.count(rows[:1] * 0 + MEAN, 0.999) == 0


def test_rows_six_standard_deviations_out_are_flagged(scorer: OutlierScorer) -> None:
    # a point 6 marginal sd out along one feature is at least 6 away in Mahalanobis distance, beyond
    # the 0.999 quantile of the reference (about 4.5 for five Gaussian features)
    far = np.array([MEAN + sign * 6 * SCALE * np.eye(5)[i] for i in range(5) for sign in (1, -1)])
    scores = scorer.scores({"x": far, "tag": np.zeros(10)})
    assert (scores >= 6).all()
    assert scorer.flags(scores, 0.999).all()
    assert scorer.count(far, 0.999) == 10
    near = np.array([MEAN + 0.5 * SCALE])
    assert not scorer.flags(scorer.scores({"x": near, "tag": np.zeros(1)})).any()


def test_fresh_reference_rows_are_flagged_at_the_configured_rate(scorer: OutlierScorer) -> None:
    rows = draw(np.random.default_rng(3), 40_000)
    scores = scorer.scores({"x": rows, "tag": np.zeros(len(rows))})
    # at q the expected rate is 1 - q; with 40 000 rows the binomial sd of the rate is
    # sqrt(q (1 - q) / 40 000): 0.0005 at q = 0.99 and 0.00016 at q = 0.999; allow about 4 sd
    assert scorer.flags(scores, 0.99).mean() == pytest.approx(0.01, abs=0.002)
    assert scorer.flags(scores, 0.999).mean() == pytest.approx(0.001, abs=0.0007)
    assert scorer.count(rows, 0.99) == int(scorer.flags(scores, 0.99).sum())


def test_thresholds_are_the_reference_quantiles(profile: Profile, scorer: OutlierScorer) -> None:
    assert profile.multivariate is not None
    stored = dict(profile.multivariate.quantiles)
    assert scorer.threshold(0.999) == stored[0.999]
    assert scorer.threshold() == stored[0.999]
    between = scorer.threshold(0.992)  # interpolated between the stored 0.99 and 0.995
    assert stored[0.99] < between < stored[0.995]
    # chi-squared with 5 degrees of freedom: sqrt(15.09) = 3.88 at 0.99; the data are Gaussian here
    assert scorer.threshold(0.99) == pytest.approx(3.88, abs=0.15)
    for q in (0.1, 0.99999, 1.0):
        with pytest.raises(ConfigError, match=rf"outlier quantile {q}: the profile keeps quantiles from 0.5 to 0.9999"):
            scorer.threshold(q)


def test_nan_rows_are_outliers(scorer: OutlierScorer) -> None:
    rows = np.array([MEAN, MEAN])
    rows[1, 2] = np.nan
    scores = scorer.scores({"x": rows, "tag": np.zeros(2)})
    assert np.isnan(scores[1])
    assert scorer.flags(scores).tolist() == [False, True]
    assert scorer.count(rows[1:]) == 1


def test_constant_and_collinear_features_stay_finite() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1000, 2))
    data = np.column_stack([x, x[:, 0] + x[:, 1], np.full(1000, 3.0)])  # collinear, and constant
    scorer = OutlierScorer(build_profile({"x": data}))
    scores = scorer.scores({"x": data[:100]})
    assert np.isfinite(scores).all() and scorer.flags(scores, 0.5).mean() == pytest.approx(0.5, abs=0.15)
    moved = data[:1].copy()
    moved[0, 3] = 4.0  # the constant feature moves: far out
    assert scorer.flags(scorer.scores({"x": moved}), 0.9999).all()


def test_a_profile_without_numeric_features_has_no_scores() -> None:
    profile = build_profile({"colour": np.array(["red", "green", "red"])})
    with pytest.raises(ConfigError, match="outlier scores need numeric input features"):
        OutlierScorer(profile)


def test_a_batch_without_the_inputs_is_refused(scorer: OutlierScorer) -> None:
    with pytest.raises(ConfigError, match="input 'x' is missing"):
        scorer.scores({"y": np.zeros((1, 5))})
