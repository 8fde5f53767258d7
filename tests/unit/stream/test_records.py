"""Stream records: bytes in, rows or requests out; answers as bytes (no broker)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelserve.errors import InvalidInput
from modelserve.stream._records import (
    Record,
    error_answer,
    fields_row,
    parse,
    request_answer,
    row_answer,
)
from modelserve.types import InferOutput, InferRequest, InferResponse


def test_a_row_parses_to_its_fields_in_order() -> None:
    row = parse(Record("1-0", b'{"b": 2.5, "a": 1, "s": "x", "t": true}'))
    assert row == {"b": 2.5, "a": 1, "s": "x", "t": True} and list(row) == ["b", "a", "s", "t"]  # type: ignore[arg-type]


def test_a_v2_request_parses_to_a_request() -> None:
    body = {"id": "r", "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    request = parse(Record("1-0", orjson.dumps(body)))
    assert isinstance(request, InferRequest) and request.id == "r"
    assert request.inputs[0].data.tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{nope", "record 7-0: the value is not JSON"),
        (b"[1, 2]", "expected a JSON object (a row of input columns, or a v2 inference request), got list"),
        (b'{"a": null}', "field 'a' is null"),
        (b'{"a": [1, 2]}', "field 'a' holds a list; a row holds scalars"),
        (b'{"a": {"b": 1}}', "field 'a' holds a dict"),
        (b'{"inputs": [{"name": "x"}]}', "record 7-0:"),
    ],
)
def test_a_bad_record_names_itself_and_the_problem(value: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match="record 7-0") as caught:
        parse(Record("7-0", value))
    assert message in caught.value.message


def test_redis_fields_become_a_row_read_as_json_where_they_are() -> None:
    row = orjson.loads(fields_row({b"a": b"5.1", b"b": b"3", b"name": b"setosa", b"flag": b"true"}))
    assert row == {"a": 5.1, "b": 3, "name": "setosa", "flag": True}


def test_a_row_answer_holds_scalars_and_lists_of_its_row() -> None:
    outputs = {
        "label": np.array([0, 2], np.int64),
        "probabilities": np.array([[0.9, 0.1], [0.2, 0.8]], np.float32),
        "name": np.array([b"setosa", b"virginica"], dtype=object),
    }
    doc = orjson.loads(row_answer("5-1", "iris", 3, outputs, 1))
    assert doc["id"] == "5-1" and doc["model_name"] == "iris" and doc["model_version"] == "3"
    assert doc["outputs"]["label"] == 2 and doc["outputs"]["name"] == "virginica"
    assert doc["outputs"]["probabilities"] == pytest.approx([0.2, 0.8])


def test_a_request_answer_is_the_v2_response_with_the_record_id() -> None:
    response = InferResponse("iris", "2", [InferOutput("label", "INT64", np.array([1]))], id="mine")
    doc = orjson.loads(request_answer("9-0", response))
    assert doc["id"] == "9-0" and doc["request_id"] == "mine" and doc["model_version"] == "2"
    assert doc["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [1], "data": [1]}]


def test_an_error_answer_has_no_outputs() -> None:
    doc = orjson.loads(error_answer("9-0", "iris", "field 'a' is null", 4))
    assert doc == {"id": "9-0", "model_name": "iris", "model_version": "4", "error": "field 'a' is null"}
    assert "model_version" not in orjson.loads(error_answer("9-0", "iris", "x"))
