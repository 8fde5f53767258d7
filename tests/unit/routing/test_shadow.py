from __future__ import annotations

import numpy as np
import pytest

from modelserve.routing.shadow import ShadowStats, outputs_agree

TOL = {"rtol": 1e-5, "atol": 1e-8}


def test_numbers_agree_within_tolerance() -> None:
    primary = {"probabilities": np.array([[0.1, 0.9]], dtype=np.float32), "label": np.array([1], dtype=np.int64)}
    close = {"probabilities": np.array([[0.1000001, 0.9]], dtype=np.float64), "label": np.array([1.0])}
    assert outputs_agree(primary, close, **TOL)
    far = {"probabilities": np.array([[0.2, 0.8]]), "label": np.array([1])}
    assert not outputs_agree(primary, far, **TOL)
    assert outputs_agree(primary, far, rtol=0, atol=0.11)


def test_tolerance_is_relative_to_the_primary() -> None:
    assert outputs_agree({"y": np.array([100.0])}, {"y": np.array([110.0])}, rtol=0.1, atol=0)
    assert not outputs_agree({"y": np.array([100.0])}, {"y": np.array([111.0])}, rtol=0.1, atol=0)


def test_nan_and_inf() -> None:
    values = np.array([np.nan, np.inf, -np.inf, 1.0])
    assert outputs_agree({"y": values}, {"y": values.copy()}, **TOL)
    assert not outputs_agree({"y": values}, {"y": np.array([np.nan, -np.inf, np.inf, 1.0])}, **TOL)
    assert not outputs_agree({"y": np.array([np.nan])}, {"y": np.array([0.0])}, **TOL)


def test_names_and_shapes_must_match() -> None:
    y = np.zeros((2, 3))
    assert not outputs_agree({"y": y}, {"y": y, "z": y}, **TOL)
    assert not outputs_agree({"y": y}, {"z": y}, **TOL)
    assert not outputs_agree({"y": y}, {"y": y.reshape(3, 2)}, **TOL)
    assert not outputs_agree({"y": y}, {"y": y.ravel()}, **TOL)
    assert outputs_agree({}, {}, **TOL)
    assert outputs_agree({"y": np.zeros((0, 3))}, {"y": np.zeros((0, 3), dtype=np.int32)}, **TOL)


def test_text_and_bytes_compare_exactly() -> None:
    labels = np.array([b"setosa", b"virginica"], dtype=object)
    assert outputs_agree({"label": labels}, {"label": np.array(["setosa", "virginica"])}, **TOL)
    assert outputs_agree({"label": labels}, {"label": np.array([b"setosa", b"virginica"])}, **TOL)
    assert not outputs_agree({"label": labels}, {"label": np.array([b"setosa", b"versicolor"], dtype=object)}, **TOL)
    assert not outputs_agree({"label": labels}, {"label": np.array([1.0, 2.0])}, **TOL)  # text against numbers
    odd, other = np.empty(2, dtype=object), np.empty(2, dtype=object)
    odd[0], odd[1] = np.array([1, 2]), b"x"
    other[0], other[1] = np.array([1, 2]), b"x"
    assert not outputs_agree({"y": odd}, {"y": other}, **TOL)  # an == that raises: not a match


def test_booleans_match_booleans_only() -> None:
    flags = np.array([True, False])
    assert outputs_agree({"y": flags}, {"y": flags.copy()}, **TOL)
    assert not outputs_agree({"y": flags}, {"y": ~flags}, **TOL)
    assert not outputs_agree({"y": flags}, {"y": np.array([1, 0])}, **TOL)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.uint64, np.float16, np.complex128])
def test_every_numeric_dtype(dtype: type) -> None:
    a = np.array([0, 1, 200], dtype=dtype)
    wider = np.complex64 if dtype is np.complex128 else np.float64
    assert outputs_agree({"y": a}, {"y": a.astype(wider)}, **TOL)
    assert not outputs_agree({"y": a}, {"y": np.array([0, 1, 201], dtype=dtype)}, **TOL)


def test_stats_to_dict() -> None:
    stats = ShadowStats()
    stats.mirrored += 3
    stats.agreed += 2
    stats.errors += 1
    assert stats.to_dict() == {"mirrored": 3, "agreed": 2, "disagreed": 0, "errors": 1, "dropped": 0}
