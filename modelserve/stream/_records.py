"""Stream records as bytes in and bytes out: what a record may hold, and what its answer holds.

Sans-I/O, like protocol/: pure functions between JSON bytes and rows, requests and answers, so
that both brokers share them and unit tests need no broker.

An input record's value is a JSON object, either

- a **row**: ``{"column": value, ...}``, scalars only (numbers, booleans, strings; a string feeds
  a BYTES input), mapped onto the model's inputs by core/columns.py as ``modelserve batch`` maps
  a table's columns; or
- a **v2 inference request** body (recognised by ``"inputs"`` holding a list), answered as the
  server's REST endpoint answers it.

An answer is a JSON object: ``id`` (the input record's id), ``model_name``, ``model_version`` and
``outputs``: ``{output: value}`` for a row (a scalar for an output of shape [N], a list for
[N, k]), the v2 response's ``outputs`` list for a request (whose own ``id``, if any, becomes
``request_id``). A record that cannot be scored gets ``error`` (a message naming the field and
the problem) instead of ``outputs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelserve.errors import InvalidInput
from modelserve.protocol.v2 import rest
from modelserve.types import InferRequest, InferResponse

SCALARS = (int, float, bool, str)


@dataclass(frozen=True, slots=True)
class Record:
    """One input record: ``id`` as the broker names it (a Redis entry id, ``topic/partition/offset``
    for Kafka), ``value`` its JSON bytes, ``key`` the message key (Kafka; copied to the answer),
    ``deliveries`` how many times the group has handed it out, this time included (1 where the
    broker does not count)."""

    id: str
    value: bytes
    key: bytes | None = None
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class Answer:
    """One output record: ``source`` is the id of the input record it answers, ``target`` the
    stream (topic) it goes to, ``failed`` whether it carries an error."""

    source: str
    target: str
    value: bytes
    key: bytes | None = None
    failed: bool = False


Row = dict[str, Any]


def parse(record: Record) -> Row | InferRequest:
    """The row or the v2 request a record holds. Raises InvalidInput naming the record and the problem."""
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"record {record.id}: the value is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidInput(
            f"record {record.id}: expected a JSON object (a row of input columns, or a v2 inference request), "
            f"got {type(doc).__name__}"
        )
    if isinstance(doc.get("inputs"), list):
        try:
            return rest.decode_infer_request(record.value, None)
        except InvalidInput as exc:
            raise InvalidInput(f"record {record.id}: {exc.message}") from None
    for name, value in doc.items():
        if value is None:
            raise InvalidInput(f"record {record.id}: field {name!r} is null")
        if not isinstance(value, SCALARS):
            raise InvalidInput(
                f"record {record.id}: field {name!r} holds a {type(value).__name__}; a row holds scalars "
                "(send a v2 inference request for tensors)"
            )
    return doc


def fields_row(fields: Mapping[bytes, bytes]) -> bytes:
    """A Redis entry written as fields (``XADD s * a 5.1 b 3.5``) as a JSON row: each value is
    read as JSON when it is JSON (``5.1`` a number), else kept as a string."""
    row: dict[str, Any] = {}
    for key, raw in fields.items():
        try:
            row[key.decode()] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            row[key.decode()] = raw.decode("utf-8", "replace")
    return orjson.dumps(row)


def row_answer(record_id: str, model: str, version: int, outputs: Mapping[str, np.ndarray], index: int) -> bytes:
    """The answer to row ``index`` of a scored batch."""
    values = {name: _value(name, data[index]) for name, data in outputs.items()}
    return orjson.dumps(
        {"id": record_id, "model_name": model, "model_version": str(version), "outputs": values},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def request_answer(record_id: str, response: InferResponse) -> bytes:
    """The answer to a v2 request: its response document, with the record's id."""
    body, _ = rest.encode_infer_response(response)
    doc = orjson.loads(body)
    own = doc.pop("id", None)
    doc = {"id": record_id, **doc}
    if own is not None:
        doc["request_id"] = own
    return orjson.dumps(doc)


def error_answer(record_id: str, model: str, message: str, version: int | None = None) -> bytes:
    doc: dict[str, Any] = {"id": record_id, "model_name": model}
    if version is not None:
        doc["model_version"] = str(version)
    doc["error"] = message
    return orjson.dumps(doc)


def _value(name: str, cell: Any) -> Any:
    if isinstance(cell, np.ndarray):
        if cell.dtype.kind == "O":
            return [_text(name, v) for v in cell.reshape(-1).tolist()]
        return cell.tolist()
    if isinstance(cell, bytes):
        return _text(name, cell)
    return cell.item() if isinstance(cell, np.generic) else cell


def _text(name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                f"output {name!r} holds bytes that are not UTF-8 text, which JSON cannot carry"
            ) from None
    return value
