"""TensorFlow Serving REST API (``/v1/models/...``): status, metadata and predict.

The request's JSON values carry no datatype, so decoding needs the model's signature: each input is
converted to the datatype the signature declares. Row format (``instances``) puts the batch first:
with one input every instance is that input's row; with several, every instance is an object
``{input_name: row}``. Columnar format (``inputs``) is a value (one input) or ``{name: value}``.

A model may have several signatures (a TensorFlow SavedModel); they are passed in as a mapping by
name, the default first. ``signature_name`` picks one ("" or absent: the default) and reaches the
core as the request parameter ``signature_name``, as on the v2 API.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelserve.errors import InvalidInput
from modelserve.protocol.json_tensor import to_array
from modelserve.protocol.v2.rest import dumps, loads
from modelserve.types import (
    InferInput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelState,
    Signature,
    TensorSpec,
    VersionStatus,
)

DEFAULT_SIGNATURE = "serving_default"

_STATES = {
    ModelState.LOADING: "LOADING",
    ModelState.READY: "AVAILABLE",
    ModelState.FAILED: "END",
    ModelState.UNLOADING: "UNLOADING",
    ModelState.UNLOADED: "END",
}
_DTYPES = {
    "BOOL": "DT_BOOL", "UINT8": "DT_UINT8", "UINT16": "DT_UINT16", "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64", "INT8": "DT_INT8", "INT16": "DT_INT16", "INT32": "DT_INT32",
    "INT64": "DT_INT64", "FP16": "DT_HALF", "FP32": "DT_FLOAT", "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}  # fmt: skip


def encode_status(statuses: Sequence[VersionStatus]) -> bytes:
    return dumps({"model_version_status": [_status(s) for s in sorted(statuses, key=lambda s: -s.version)]})


def _status(s: VersionStatus) -> dict[str, Any]:
    failed = s.state is ModelState.FAILED
    # a READY version's reason is news about it (the model's last reload failed), so it is shown
    message = s.reason if failed or s.state is ModelState.READY else ""
    return {
        "version": str(s.version),
        "state": _STATES[s.state],
        "status": {"error_code": "UNKNOWN" if failed else "OK", "error_message": message},
    }


def encode_metadata(meta: ModelMetadata, version: int, signatures: Mapping[str, Signature] | None = None) -> bytes:
    """GetModelMetadata's JSON: a signature_def per signature (default: ``meta.signature`` only)."""
    defs = {name: _signature_def(s) for name, s in _by_name(signatures or meta.signature).items()}
    return dumps(
        {
            "model_spec": {"name": meta.name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": defs}},
        }
    )


def _signature_def(signature: Signature) -> dict[str, Any]:
    return {
        "inputs": {t.name: _tensor_info(t) for t in signature.inputs},
        "outputs": {t.name: _tensor_info(t) for t in signature.outputs},
        "method_name": "tensorflow/serving/predict",
    }


def _by_name(signatures: Signature | Mapping[str, Signature]) -> Mapping[str, Signature]:
    return {DEFAULT_SIGNATURE: signatures} if isinstance(signatures, Signature) else signatures


def _tensor_info(t: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": _DTYPES[t.datatype],
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in t.shape], "unknown_rank": False},
        "name": t.name,
    }


def decode_predict_request(body: bytes, signatures: Signature | Mapping[str, Signature]) -> tuple[InferRequest, bool]:
    """The request, and whether it used row format (``instances``), which shapes the response.

    ``signatures``: the model's one signature, or all of them by name with the default first.
    """
    doc = loads(body)
    if not isinstance(doc, dict):
        raise InvalidInput(f"request body must be a JSON object, got {type(doc).__name__}")
    by_name = _by_name(signatures)
    default = next(iter(by_name))
    name = doc.get("signature_name") or default  # "" means the default, as in TF Serving
    signature = by_name.get(name) if isinstance(name, str) else None
    if signature is None:
        raise InvalidInput(f"signature_name {name!r} not found; this model has {list(by_name)}")
    parameters = {} if name == default else {"signature_name": name}  # the core's default needs none
    if ("instances" in doc) == ("inputs" in doc):
        raise InvalidInput("request needs exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if "instances" in doc:
        return InferRequest(inputs=_rows(doc["instances"], signature), parameters=parameters), True
    return InferRequest(inputs=_columns(doc["inputs"], signature), parameters=parameters), False


def _rows(instances: object, signature: Signature) -> list[InferInput]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list with one element per example")
    specs = signature.inputs
    named = all(isinstance(row, dict) for row in instances) and not _is_b64(instances[0])
    if len(specs) == 1 and not named:
        return [_input(specs[0], instances)]
    if not named:
        raise InvalidInput(
            f"this model has inputs {[s.name for s in specs]}, so each instance must be an object keyed by input name"
        )
    columns = []
    for spec in specs:
        missing = [i for i, row in enumerate(instances) if spec.name not in row]
        if missing:
            raise InvalidInput(f"instances {missing[:5]} lack input {spec.name!r}")
        columns.append(_input(spec, [row[spec.name] for row in instances]))
    _reject_unknown({k for row in instances for k in row}, signature)
    return columns


def _columns(inputs: object, signature: Signature) -> list[InferInput]:
    specs = signature.inputs
    if isinstance(inputs, dict) and not _is_b64(inputs):
        _reject_unknown(set(inputs), signature)
        missing = [s.name for s in specs if s.name not in inputs]
        if missing:
            raise InvalidInput(f"'inputs' lacks {missing}")
        return [_input(s, inputs[s.name]) for s in specs]
    if len(specs) != 1:
        raise InvalidInput(f"this model has inputs {[s.name for s in specs]}; give 'inputs' as an object keyed by name")
    return [_input(specs[0], inputs)]


def _input(spec: TensorSpec, value: object) -> InferInput:
    return InferInput(spec.name, spec.datatype, to_array(spec.name, spec.datatype, value))


def _reject_unknown(names: set[str], signature: Signature) -> None:
    unknown = sorted(names - {s.name for s in signature.inputs})
    if unknown:
        raise InvalidInput(f"unknown input(s) {unknown}; this model has {[s.name for s in signature.inputs]}")


def _is_b64(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def encode_predict_response(response: InferResponse, rows: bool) -> bytes:
    values = {o.name: _json_value(o.data) for o in response.outputs}
    if not rows:
        return dumps({"outputs": next(iter(values.values())) if len(values) == 1 else values})
    if len(values) == 1:
        return dumps({"predictions": next(iter(values.values()))})
    batch = {len(o.data) if o.data.ndim else -1 for o in response.outputs}
    if len(batch) != 1 or -1 in batch:
        raise InvalidInput("the outputs of this model differ in batch size; use the columnar 'inputs' format")
    # numpy scalars from indexing are not all JSON-serialisable (e.g. numpy.longlong): use lists
    lists = {name: v.tolist() if isinstance(v, np.ndarray) else v for name, v in values.items()}
    return dumps({"predictions": [{name: v[i] for name, v in lists.items()} for i in range(batch.pop())]})


def _json_value(array: np.ndarray) -> Any:
    if array.dtype.kind != "O":
        # a scalar output is a JSON scalar: ascontiguousarray would make it a 1-element list
        return np.ascontiguousarray(array) if array.ndim else array.tolist()
    return np.vectorize(_text, otypes=[object])(array).tolist() if array.size else array.tolist()


def _text(value: bytes) -> Any:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}
