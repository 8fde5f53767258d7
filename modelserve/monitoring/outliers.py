"""Outlier scores: how far a row's numeric input features lie from the training data.

The score is the Mahalanobis distance from the training mean under the training covariance (as kept
in the profile). The threshold is *empirical*: the distance that the given fraction of training
rows themselves did not exceed, not a chi-squared quantile. Real features are skewed, heavy-tailed
or discrete, and the chi-squared quantiles assume a Gaussian, so they would flag far more (or far
fewer) rows than intended; the empirical quantile means what it says, "farther out than 99.9% of
the training rows". The profile keeps the quantiles in DISTANCE_QUANTILES; other quantiles are
interpolated linearly between the two stored neighbours. A training set of N rows cannot resolve a
quantile above 1 - 1/N (it is then the largest training distance).

Scoring is plain vectorised numpy, cheap enough for the request path (a few microseconds a row).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelserve.errors import ConfigError
from modelserve.monitoring.profile import Profile, mahalanobis


class OutlierScorer:
    """Scores rows against ``profile``. Raises ConfigError if it has no numeric input features."""

    def __init__(self, profile: Profile) -> None:
        mv = profile.multivariate
        if mv is None:
            raise ConfigError(f"outlier scores need numeric input features; the profile has {profile.feature_names}")
        self.profile = profile
        self._mean = np.asarray(mv.mean, dtype=np.float64)
        self._precision = np.asarray(mv.precision, dtype=np.float64)
        self._quantiles = np.asarray([q for q, _ in mv.quantiles])
        self._distances = np.asarray([d for _, d in mv.quantiles])
        self._squared: dict[float, float] = {}  # quantile -> squared threshold, for count()

    def scores(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Mahalanobis distance ``[N]`` of each row of a batch (input tensors by name); NaN for rows
        with a NaN feature. Raises ConfigError when the batch lacks a tensor the profile needs."""
        return self.distances(self.profile.numeric_features(inputs))

    def distances(self, matrix: np.ndarray) -> np.ndarray:
        """As :meth:`scores`, for a numeric feature matrix from :meth:`Profile.features`."""
        return mahalanobis(matrix, self._mean, self._precision)

    def count(self, matrix: np.ndarray, quantile: float = 0.999) -> int:
        """How many rows of a numeric feature matrix lie beyond :meth:`threshold` (NaN rows count).
        Compares squared distances, and a single row takes a fast path: the detector's per-batch
        tally, a few microseconds a row."""
        limit = self._squared.get(quantile)
        if limit is None:
            limit = self._squared[quantile] = self.threshold(quantile) ** 2
        if len(matrix) == 1:
            d = matrix[0] - self._mean
            return int(not d @ self._precision @ d <= limit)
        d = matrix - self._mean
        return int(np.count_nonzero(~(np.einsum("ij,ij->i", d @ self._precision, d) <= limit)))

    def threshold(self, quantile: float = 0.999) -> float:
        """The training rows' Mahalanobis distance at ``quantile`` (interpolated between the stored
        quantiles). Raises ConfigError outside the stored range."""
        lo, hi = float(self._quantiles[0]), float(self._quantiles[-1])
        if not lo <= quantile <= hi:
            raise ConfigError(f"outlier quantile {quantile}: the profile keeps quantiles from {lo} to {hi}")
        return float(np.interp(quantile, self._quantiles, self._distances))

    def flags(self, scores: np.ndarray, quantile: float = 0.999) -> np.ndarray:
        """True where a score exceeds :meth:`threshold` at ``quantile``; a NaN score is an outlier."""
        return ~(np.asarray(scores) <= self.threshold(quantile))
