"""Open Inference Protocol v2, REST/JSON encoding.

Requests are parsed with orjson into plain dicts and checked by hand: per-request pydantic models
would cost more than the inference of a small model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from modelserve.errors import InvalidInput, Unsupported
from modelserve.protocol.json_tensor import ElementBudget, check_datatype, check_shape, to_array
from modelserve.protocol.v2 import binary
from modelserve.types import (
    IndexEntry,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    RequestedOutput,
    TensorSpec,
)

_DUMP = orjson.OPT_SERIALIZE_NUMPY


def loads(body: bytes) -> Any:
    """Parse JSON; raises InvalidInput with orjson's reason (position, recursion limit...)."""
    if not body:
        raise InvalidInput("request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=_DUMP)


def decode_infer_request(body: bytes, json_length: int | None = None, max_elements: int = 0) -> InferRequest:
    """Decode a JSON body, or with ``json_length`` a binary-extension body (JSON header + tensors).
    ``max_elements``: of all inputs together, checked on the shapes before decoding (0: no limit);
    more raises RequestTooLarge."""
    doc = loads(body if json_length is None else body[:json_length])
    blobs = _Blobs(memoryview(body)[json_length:] if json_length is not None else memoryview(b""))
    if not isinstance(doc, dict):
        raise InvalidInput(f"request body must be a JSON object, got {type(doc).__name__}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("request needs 'inputs': a non-empty list of tensors")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"'id' must be a string, got {request_id!r}")
    outputs = doc.get("outputs")
    budget = ElementBudget(max_elements)
    request = InferRequest(
        inputs=[_decode_input(i, item, blobs, budget) for i, item in enumerate(inputs)],
        id=request_id,
        parameters=_parameters(doc, "request"),
        outputs=None if outputs is None else _decode_outputs(outputs),
    )
    blobs.check_consumed()
    return request


class _Blobs:
    """The binary part of a body, handed out in input order."""

    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._offset = 0

    def take(self, name: str, size: object) -> memoryview:
        if type(size) is not int or size < 0:
            raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
        if self._offset + size > len(self._data):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size} runs past the end of the body "
                f"({len(self._data) - self._offset} binary bytes left)"
            )
        blob = self._data[self._offset : self._offset + size]
        self._offset += size
        return blob

    def check_consumed(self) -> None:
        if self._offset != len(self._data):
            extra = len(self._data) - self._offset
            raise InvalidInput(f"the body has {extra} bytes of binary data that no input's binary_data_size claims")


def _decode_input(index: int, item: object, blobs: _Blobs, budget: ElementBudget) -> InferInput:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be an object with name, shape, datatype, data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}] needs a non-empty string 'name', got {name!r}")
    parameters = _parameters(item, f"input {name!r}")
    is_binary = "binary_data_size" in parameters
    for key in ("shape", "datatype") if is_binary else ("shape", "datatype", "data"):
        if key not in item:
            raise InvalidInput(f"input {name!r} lacks {key!r}")
    datatype = item["datatype"]
    check_datatype(name, datatype)
    shape = check_shape(name, item["shape"])
    budget.take(name, shape)
    if is_binary:
        if "data" in item:
            raise InvalidInput(
                f"input {name!r} has both 'data' and the parameter binary_data_size; send its values in one of them"
            )
        blob = blobs.take(name, parameters["binary_data_size"])
        return InferInput(name, datatype, binary.decode_tensor(name, datatype, shape, blob), parameters)
    data = item["data"]
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: 'data' must be a list (flat or nested), got {type(data).__name__}")
    return InferInput(name, datatype, to_array(name, datatype, data, shape), parameters)


def _decode_outputs(outputs: object) -> list[RequestedOutput]:
    if not isinstance(outputs, list) or not outputs:
        raise InvalidInput(f"'outputs' must be a list of {{\"name\": ...}} objects (at least one), got {outputs!r}")
    result = []
    for i, item in enumerate(outputs):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise InvalidInput(f"outputs[{i}] must be an object with a string 'name', got {item!r}")
        result.append(RequestedOutput(name, _parameters(item, f"output {name!r}")))
    return result


def _parameters(doc: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = doc.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}: 'parameters' must be an object, got {params!r}")
    return params


def encode_infer_response(response: InferResponse, request: InferRequest | None = None) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when some outputs are binary (None: plain JSON).

    ``request`` decides which outputs go out as binary (``binary_data_output``, ``binary_data``).
    """
    wanted = _binary_outputs(request)
    blobs: list[bytes] = []
    outputs = []
    for output in response.outputs:
        if output.name in wanted:
            blob = binary.encode_tensor(output.data)
            blobs.append(blob)
            outputs.append({**_header(output), "parameters": {"binary_data_size": len(blob)}})
        else:
            outputs.append({**_header(output), "data": json_data(output.name, output.data)})
    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    head = dumps(doc)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def _binary_outputs(request: InferRequest | None) -> frozenset[str] | _All:
    if request is None:
        return frozenset()
    if request.outputs is None:
        return _ALL if binary.wants_binary(request.parameters, None) else frozenset()
    return frozenset(o.name for o in request.outputs if binary.wants_binary(request.parameters, o.parameters))


class _All:
    def __contains__(self, name: object) -> bool:
        return True


_ALL = _All()


def _header(output: InferOutput) -> dict[str, Any]:
    return {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}


def json_data(name: str, array: np.ndarray) -> Any:
    """Flat JSON-ready data: a contiguous numpy array (orjson writes it natively) or a list of str."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.kind != "O":
        return flat
    try:
        return [b.decode("utf-8") for b in flat.tolist()]
    except UnicodeDecodeError:
        raise Unsupported(
            f"output {name!r} holds bytes that are not UTF-8 text, which JSON cannot carry; request it as binary data"
        ) from None


def encode_metadata(meta: ModelMetadata) -> bytes:
    doc: dict[str, Any] = {
        "name": meta.name,
        "versions": [str(v) for v in meta.versions],
        "platform": meta.platform,
        "inputs": _specs(meta.signature.inputs),
        "outputs": _specs(meta.signature.outputs),
    }
    if meta.metadata:
        doc["parameters"] = dict(meta.metadata)
    return dumps(doc)


def _specs(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]


def encode_error(message: str) -> bytes:
    return dumps({"error": message})


def decode_index_request(body: bytes) -> bool:
    """The ``ready`` flag of a repository index request (an empty body means false)."""
    if not body.strip():
        return False
    doc = loads(body)
    if not isinstance(doc, dict):
        raise InvalidInput(f"repository index request must be a JSON object, got {type(doc).__name__}")
    ready = doc.get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidInput(f"'ready' must be true or false, got {ready!r}")
    return ready


def decode_control_parameters(body: bytes) -> dict[str, Any]:
    """The ``parameters`` of a load/unload request (an empty body means none)."""
    if not body.strip():
        return {}
    doc = loads(body)
    if not isinstance(doc, dict):
        raise InvalidInput(f"load/unload request must be a JSON object, got {type(doc).__name__}")
    return _parameters(doc, "load/unload request")


def encode_index(entries: Iterable[IndexEntry]) -> bytes:
    rows = []
    for e in entries:
        row: dict[str, Any] = {"name": e.name}
        if e.version is not None:
            row["version"] = str(e.version)
        if e.state is not None:
            row["state"] = e.state.value
        if e.reason:
            row["reason"] = e.reason
        rows.append(row)
    return dumps(rows)
