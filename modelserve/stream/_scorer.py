"""Scores the records of one read with the model version the manager serves now.

The rows of a read that have the same fields become one request, answered by one call through the
version's batcher (``Handle.infer``: the server's validation, admission and batching). If that call
fails (a value that does not convert, an input the model refuses), each row is sent on its own,
concurrently (so the batcher still merges the good ones), and only the rows that fail alone get an
error answer. A v2 request record is one request of its own. Every record gets exactly one answer.

Errors that are no record's fault (the model is not loaded, or is loading; the queue is full)
propagate: the caller retries the same records later and acknowledges nothing meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelserve.core.admission import Overloaded
from modelserve.core.columns import ColumnMap, column_map, gather
from modelserve.core.manager import Handle, ModelManager
from modelserve.errors import DeadlineExceeded, InvalidInput, ModelNotFound, ModelNotReady, ModelServeError
from modelserve.stream._records import Record, Row, error_answer, parse, request_answer, row_answer
from modelserve.types import InferInput, InferRequest, Signature

# not a record's fault: retry the whole read later
TRANSIENT = (ModelNotReady, ModelNotFound, Overloaded, DeadlineExceeded)

Scored = tuple[str, bytes, bool]  # (input record id, answer, failed)


class Scorer:
    def __init__(self, manager: ModelManager, model: str, columns: Sequence[str] | None = None) -> None:
        self._manager = manager
        self._model = model
        self._columns = list(columns) if columns else None
        self._maps: dict[tuple[int, tuple[str, ...]], ColumnMap | InvalidInput] = {}

    async def score(self, records: Sequence[Record]) -> tuple[int, list[Scored]]:
        """(the version that answered, one answer per record, in record order). Blocks while the
        model computes. Raises the TRANSIENT errors: nothing was answered."""
        handle = await self._manager.checkout(self._model)
        with handle:
            answers: dict[str, Scored] = {}
            groups: dict[tuple[str, ...], list[tuple[Record, Row]]] = {}
            requests: list[tuple[Record, InferRequest]] = []
            for record in records:
                try:
                    parsed = parse(record)
                except InvalidInput as exc:
                    answers[record.id] = self._error(record, exc.message, handle.version)
                    continue
                if isinstance(parsed, InferRequest):
                    requests.append((record, parsed))
                else:
                    groups.setdefault(tuple(parsed), []).append((record, parsed))
            jobs = [self._rows(handle, list(keys), rows) for keys, rows in groups.items()]
            jobs += [self._request(handle, record, request) for record, request in requests]
            for done in await asyncio.gather(*jobs):
                answers.update((scored[0], scored) for scored in done)
            return handle.version, [answers[record.id] for record in records]

    async def _rows(self, handle: Handle, keys: list[str], rows: list[tuple[Record, Row]]) -> list[Scored]:
        signature = handle.metadata.signature
        mapping = self._map(handle, signature, keys)
        if isinstance(mapping, InvalidInput):
            return [self._error(record, mapping.message, handle.version) for record, _ in rows]
        try:
            outputs = await self._predict(handle, signature, mapping, [row for _, row in rows])
        except TRANSIENT:
            raise
        except (ModelServeError, ValueError, TypeError):
            if len(rows) == 1:
                return [await self._alone(handle, signature, mapping, *rows[0])]
            return list(await asyncio.gather(*(self._alone(handle, signature, mapping, r, row) for r, row in rows)))
        version = handle.version
        return [
            (record.id, row_answer(record.id, self._model, version, outputs, i), False)
            for i, (record, _) in enumerate(rows)
        ]

    async def _alone(
        self, handle: Handle, signature: Signature, mapping: ColumnMap, record: Record, row: Row
    ) -> Scored:
        try:
            outputs = await self._predict(handle, signature, mapping, [row])
        except TRANSIENT:
            raise
        except (ModelServeError, ValueError, TypeError) as exc:
            return self._error(record, f"record {record.id}: {_message(exc)}", handle.version)
        return record.id, row_answer(record.id, self._model, handle.version, outputs, 0), False

    async def _request(self, handle: Handle, record: Record, request: InferRequest) -> list[Scored]:
        try:
            response = await handle.infer(request)
        except TRANSIENT:
            raise
        except ModelServeError as exc:
            return [self._error(record, f"record {record.id}: {exc.message}", handle.version)]
        return [(record.id, request_answer(record.id, response), False)]

    async def _predict(
        self, handle: Handle, signature: Signature, mapping: ColumnMap, rows: list[Row]
    ) -> dict[str, np.ndarray]:
        inputs = gather(signature, mapping, lambda name: _column([row[name] for row in rows]))
        request = InferRequest([InferInput(s.name, s.datatype, inputs[s.name]) for s in signature.inputs])
        response = await handle.infer(request)
        return {out.name: out.data for out in response.outputs}

    def _map(self, handle: Handle, signature: Signature, keys: list[str]) -> ColumnMap | InvalidInput:
        """The column map of rows with these fields, kept per version (a new one may take others)."""
        cache_key = (handle.version, tuple(keys))
        found = self._maps.get(cache_key)
        if found is None:
            if len(self._maps) > 1024:  # rows with ever-new field sets: do not grow without bound
                self._maps.clear()
            try:
                found = column_map(signature, keys, self._columns, f"{self._model} version {handle.version}")
            except InvalidInput as exc:
                found = exc
            self._maps[cache_key] = found
        return found

    def refuse(self, record: Record, message: str) -> Scored:
        """An error answer for ``record``, which is not scored."""
        return self._error(record, message, None)

    def _error(self, record: Record, message: str, version: int | None) -> Scored:
        return record.id, error_answer(record.id, self._model, message, version), True


def _column(values: list[Any]) -> np.ndarray:
    """A column of row values; strings become bytes (BYTES inputs hold bytes, as the v2 codec makes them)."""
    if any(isinstance(v, str) for v in values):
        return np.array([v.encode() if isinstance(v, str) else v for v in values], dtype=object)
    return np.asarray(values)


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, ModelServeError) else f"{type(exc).__name__}: {exc}"
