"""``modelserve.protocol.json_tensor``: JSON values to typed numpy arrays, checked element by element."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from modelserve.errors import InvalidInput
from modelserve.protocol.json_tensor import MAX_RANK, check_datatype, check_shape, to_array
from modelserve.types import DATATYPES

# Each datatype with six values that include its extremes; every value is exact in its dtype.
SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True, False, False],
    "UINT8": [0, 1, 2, 3, 254, 255],
    "UINT16": [0, 1, 2, 3, 65534, 65535],
    "UINT32": [0, 1, 2, 3, 2**32 - 2, 2**32 - 1],
    "UINT64": [0, 1, 2, 3, 2**64 - 2, 2**64 - 1],
    "INT8": [-128, -1, 0, 1, 2, 127],
    "INT16": [-(2**15), -1, 0, 1, 2, 2**15 - 1],
    "INT32": [-(2**31), -1, 0, 1, 2, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 1, 2, 2**63 - 1],
    "FP16": [-65504.0, -1.5, 0.0, 0.25, 1, 65504.0],
    "FP32": [-3.0e38, -1.5, 0.0, 0.25, 7, 3.0e38],
    "FP64": [-1.0e308, -0.1, 0.0, 0.1, 3, 1.0e308],
    "BYTES": ["a", "", "café", "nul\x00", "\x00\x00", "z"],
}


def _nested(flat: list[Any], shape: tuple[int, int]) -> list[list[Any]]:
    rows, cols = shape
    return [flat[r * cols : (r + 1) * cols] for r in range(rows)]


def _expected(datatype: str, flat: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([s.encode("utf-8") for s in flat], dtype=object).reshape(shape)
    return np.array(flat, dtype=DATATYPES[datatype]).reshape(shape)


def test_samples_cover_every_datatype() -> None:
    assert set(SAMPLES) == set(DATATYPES)


@pytest.mark.parametrize("datatype", list(DATATYPES))
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_to_array_gives_declared_dtype_and_shape(datatype: str, nested: bool) -> None:
    flat = SAMPLES[datatype]
    data = _nested(flat, (2, 3)) if nested else flat
    array = to_array("x", datatype, data, (2, 3))
    assert array.dtype == DATATYPES[datatype]
    assert array.shape == (2, 3)
    expected = _expected(datatype, flat, (2, 3))
    assert array.tolist() == expected.tolist()
    if datatype == "BYTES":
        assert all(type(v) is bytes for v in array.ravel())


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_without_shape_the_nesting_gives_the_shape(datatype: str) -> None:
    flat = SAMPLES[datatype]
    array = to_array("x", datatype, _nested(flat, (3, 2)), None)
    assert array.dtype == DATATYPES[datatype]
    assert array.shape == (3, 2)
    assert array.tolist() == _expected(datatype, flat, (3, 2)).tolist()


def test_flat_data_is_read_in_row_major_order() -> None:
    array = to_array("x", "INT32", [1, 2, 3, 4, 5, 6], (3, 2))
    assert array.tolist() == [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize(
    ("datatype", "data", "shape"),
    [
        pytest.param("FP32", [], (0,), id="fp32-0"),
        pytest.param("INT8", [[], []], (2, 0), id="int8-2x0"),
        pytest.param("BOOL", [], (0, 3), id="bool-0x3"),
        pytest.param("BYTES", [], (0,), id="bytes-0"),
    ],
)
def test_empty_tensors_keep_dtype_and_shape(datatype: str, data: list[Any], shape: tuple[int, ...]) -> None:
    array = to_array("x", datatype, data, shape)
    assert array.dtype == DATATYPES[datatype]
    assert array.shape == shape


def test_bytes_keep_trailing_nuls_and_utf8() -> None:
    array = to_array("s", "BYTES", ["ab\x00\x00", "é"], (2,))
    assert array.tolist() == [b"ab\x00\x00", b"\xc3\xa9"]


def test_b64_objects_become_raw_bytes_with_trailing_nuls() -> None:
    raw = [b"\xff\x00\x01", b"tail\x00\x00"]
    data = [{"b64": base64.b64encode(r).decode()} for r in raw]
    array = to_array("s", "BYTES", data, None)
    assert array.dtype == object and array.shape == (2,)
    assert array.tolist() == raw


def test_a_single_b64_object_is_a_scalar_bytes_tensor() -> None:
    array = to_array("s", "BYTES", {"b64": base64.b64encode(b"\x00x\x00").decode()}, None)
    assert array.shape == ()
    assert array.item() == b"\x00x\x00"


def test_text_and_b64_may_be_mixed_in_any_order() -> None:
    b64 = {"b64": base64.b64encode(b"\xfe\x00").decode()}
    assert to_array("s", "BYTES", [b64, "text"], None).tolist() == [b"\xfe\x00", b"text"]
    assert to_array("s", "BYTES", ["text", b64], None).tolist() == [b"text", b"\xfe\x00"]


def test_invalid_base64_names_the_input_and_the_problem() -> None:
    with pytest.raises(InvalidInput, match=r"'s'.*base64|base64.*'s'"):
        to_array("s", "BYTES", [{"b64": "not base64!"}], None)


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_check_datatype_accepts_every_protocol_datatype(datatype: str) -> None:
    assert check_datatype("x", datatype) == DATATYPES[datatype]


@pytest.mark.parametrize(
    "datatype",
    [
        pytest.param("FLOAT32", id="unknown-name"),
        pytest.param("fp32", id="lower-case"),
        pytest.param("BF16", id="bf16-not-offered"),
        pytest.param(None, id="null"),
        pytest.param(3, id="number"),
    ],
)
def test_check_datatype_rejects(datatype: object) -> None:
    with pytest.raises(InvalidInput, match=r"input 'pixels': unknown datatype") as info:
        check_datatype("pixels", datatype)
    assert repr(datatype) in str(info.value)


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param([], id="scalar"),
        pytest.param([0], id="zero"),
        pytest.param([2, 3], id="2x3"),
        pytest.param([1] * MAX_RANK, id="max-rank"),
        pytest.param([2**62], id="huge-dim"),
    ],
)
def test_check_shape_accepts(shape: list[int]) -> None:
    assert check_shape("x", shape) == tuple(shape)


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param((2, 3), id="tuple"),
        pytest.param("2,3", id="string"),
        pytest.param(None, id="null"),
        pytest.param(3, id="int"),
        pytest.param([2, -1], id="negative"),
        pytest.param([True, 2], id="bool"),
        pytest.param([2.0], id="float"),
        pytest.param(["2"], id="string-dim"),
        pytest.param([1] * (MAX_RANK + 1), id="too-many-dims"),
    ],
)
def test_check_shape_rejects(shape: object) -> None:
    with pytest.raises(InvalidInput, match=rf"input 'pixels': shape must be a list of at most {MAX_RANK} non-neg"):
        check_shape("pixels", shape)


@pytest.mark.parametrize(
    ("datatype", "data", "shape", "match"),
    [
        pytest.param("FP32", [1, 2, 3], (2, 2), r"data has 3 elements but shape \[2, 2\] needs 4", id="too-few"),
        pytest.param("FP32", [1] * 5, (2, 2), r"data has 5 elements but shape \[2, 2\] needs 4", id="too-many"),
        pytest.param(
            "FP32",
            [1.0] * 32,
            (16, 2**60 + 2),
            rf"data has 32 elements but shape \[16, {2**60 + 2}\] needs {16 * (2**60 + 2)}",
            id="count-overflows-int64",
        ),
        pytest.param("FP32", [], (0, 2**62), r"shape", id="zero-size-but-unrepresentable"),
        pytest.param("FP32", [[1, 2], [3]], (2, 2), "ragged", id="ragged"),
        pytest.param("FP32", [1, [2]], (2,), "mixes lists and scalars", id="list-and-scalar"),
        pytest.param("BYTES", [["a"], ["b", "c"]], (2,), "non-string element", id="bytes-ragged"),
        pytest.param(
            "FP32", [[1, 2], [3, 4]], (4,), r"nested data has shape \[2, 2\] but shape says \[4\]", id="nest-vs-flat"
        ),
        pytest.param(
            "FP32", [[1, 2], [3, 4]], (1, 4), r"nested data has shape \[2, 2\] but shape says \[1, 4\]", id="nest-2x2"
        ),
        pytest.param("FP32", [1, "2"], (2,), "FP32 needs numbers in data, got strings", id="string-in-fp32"),
        pytest.param("INT64", ["1"], (1,), "INT64 needs integers in data, got strings", id="string-in-int64"),
        pytest.param("INT32", [1, 2.5], (2,), "INT32 needs integers in data, got numbers", id="float-in-int32"),
        pytest.param("INT8", [1.0], (1,), "INT8 needs integers in data, got numbers", id="integral-float-in-int8"),
        pytest.param("INT8", [127, 128], (2,), r"value 128 is out of range for INT8 \[-128, 127\]", id="int8-high"),
        pytest.param("INT8", [-129], (1,), r"value -129 is out of range for INT8", id="int8-low"),
        pytest.param("UINT8", [256], (1,), r"value 256 is out of range for UINT8 \[0, 255\]", id="uint8-high"),
        pytest.param("UINT8", [0, -1], (2,), r"value -1 is out of range for UINT8", id="uint8-negative"),
        pytest.param("UINT64", [-1], (1,), r"out of range for UINT64", id="uint64-negative"),
        pytest.param("UINT64", [-1, 2**64 - 1], (2,), r"out of range for UINT64", id="uint64-negative-and-max"),
        pytest.param("INT64", [2**63], (1,), rf"value {2**63} is out of range for INT64", id="int64-high"),
        pytest.param("FP16", [1.0, 1e6], (2,), r"out of range for FP16", id="fp16-float-high"),
        pytest.param("FP16", [-1e5], (1,), r"out of range for FP16", id="fp16-float-low"),
        pytest.param("FP16", [1, 70000], (2,), r"out of range for FP16", id="fp16-int-high"),
        pytest.param("FP32", [1e39], (1,), r"out of range for FP32", id="fp32-high"),
        pytest.param("FP32", [True, False], (2,), "FP32 needs numbers in data, got booleans", id="bools-in-fp32"),
        pytest.param("FP32", [1.5, True], (2,), "(?i)bool", id="bool-mixed-into-fp32"),
        pytest.param("INT32", [1, True], (2,), "(?i)bool", id="bool-mixed-into-int32"),
        pytest.param("BOOL", [1, 0], (2,), "BOOL needs true/false in data, got integers", id="ints-in-bool"),
        pytest.param("BOOL", [True, 1], (2,), "BOOL needs true/false in data", id="int-mixed-into-bool"),
        pytest.param("BOOL", [0.5], (1,), "BOOL needs true/false in data, got numbers", id="float-in-bool"),
        pytest.param("FP64", [1, None], (2,), "FP64 needs numbers in data, got mixed values", id="null-in-fp64"),
        pytest.param("BYTES", ["a", 1], (2,), "BYTES needs strings in data, got int", id="int-in-bytes"),
        pytest.param("BYTES", [None], (1,), "BYTES needs strings in data, got NoneType", id="null-in-bytes"),
        pytest.param("BYTES", [{"x": "y"}], (1,), "BYTES needs strings in data, got dict", id="object-in-bytes"),
    ],
)
def test_to_array_rejects(datatype: str, data: list[Any], shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as info:
        to_array("pixels", datatype, data, shape)
    assert "'pixels'" in str(info.value)
