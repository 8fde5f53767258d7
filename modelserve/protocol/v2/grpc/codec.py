"""Open Inference Protocol v2, gRPC encoding: protobuf messages to and from ``types``.

Tensors arrive either typed (``InferTensorContents``) or raw (``raw_input_contents``, one entry
per input, the layout of the REST binary extension). Raw inputs are wrapped with
``np.frombuffer`` without a copy. Outputs go back raw, like Triton, unless the request sets the
parameter ``binary_data_output`` to false; FP16 and BF16 have no typed field and are always raw.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import orjson

from modelserve.errors import InvalidInput
from modelserve.protocol.json_tensor import ElementBudget, check_datatype, check_int_range, check_shape, reshape
from modelserve.protocol.v2 import binary
from modelserve.protocol.v2.grpc import messages as pb
from modelserve.types import (
    IndexEntry,
    InferInput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    RequestedOutput,
    TensorSpec,
)

# datatype -> the InferTensorContents field that carries it (narrow ints travel widened)
CONTENTS: Mapping[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_NARROW = frozenset({"INT8", "INT16", "UINT8", "UINT16"})
_INT64_MAX = 2**63 - 1


def decode_infer_request(msg: Any, max_elements: int = 0) -> InferRequest:
    """A ``ModelInferRequest`` as an InferRequest. Raises InvalidInput naming the problem, or
    RequestTooLarge past ``max_elements`` in all inputs (0: no limit; checked before decoding)."""
    if not msg.inputs:
        raise InvalidInput("request needs 'inputs': at least one tensor")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries but the request has {len(msg.inputs)} inputs; "
            "send every input raw, or none"
        )
    budget = ElementBudget(max_elements)
    inputs = [_decode_input(i, tensor, raw[i] if raw else None, budget) for i, tensor in enumerate(msg.inputs)]
    outputs = [RequestedOutput(o.name, decode_parameters(o.parameters, f"output {o.name!r}")) for o in msg.outputs]
    for i, o in enumerate(outputs):
        if not o.name:
            raise InvalidInput(f"outputs[{i}] needs a non-empty 'name'")
    return InferRequest(
        inputs=inputs,
        id=msg.id or None,
        parameters=decode_parameters(msg.parameters, "request"),
        outputs=outputs or None,
    )


def _decode_input(index: int, tensor: Any, raw: bytes | None, budget: ElementBudget) -> InferInput:
    name = tensor.name
    if not name:
        raise InvalidInput(f"inputs[{index}] needs a non-empty 'name'")
    datatype = tensor.datatype
    check_datatype(name, datatype)
    shape = check_shape(name, list(tensor.shape))
    budget.take(name, shape)
    parameters = decode_parameters(tensor.parameters, f"input {name!r}")
    carried = [field.name for field, _ in tensor.contents.ListFields()]
    if raw is not None:
        if carried:
            raise InvalidInput(f"input {name!r} has data both in raw_input_contents and in contents.{carried[0]}")
        return InferInput(name, datatype, binary.decode_tensor(name, datatype, shape, memoryview(raw)), parameters)
    return InferInput(name, datatype, _typed(name, datatype, shape, tensor.contents, carried), parameters)


def _typed(name: str, datatype: str, shape: tuple[int, ...], contents: Any, carried: list[str]) -> np.ndarray:
    field = CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents")
    stray = [f for f in carried if f != field]
    if stray:
        raise InvalidInput(
            f"input {name!r} of datatype {datatype} carries data in contents.{stray[0]}; expected {field}"
        )
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: contents.{field} holds {len(values)} values but shape {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return reshape(name, array, shape)
    dtype = np.dtype(check_datatype(name, datatype))
    if datatype in _NARROW:
        wide = np.array(values, dtype=np.int64)
        check_int_range(name, datatype, dtype, wide)
        return reshape(name, wide.astype(dtype), shape)
    return reshape(name, np.array(values, dtype=dtype), shape)


def decode_parameters(params: Mapping[str, Any], where: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in params.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInput(f"{where}: parameter {key!r} has no value")
        result[key] = getattr(value, choice)
    return result


def encode_parameters(target: Any, params: Mapping[str, Any]) -> None:
    """Fill a protobuf parameter map; values that are not scalars travel as JSON strings."""
    for key, value in params.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int) and value > _INT64_MAX:
            slot.uint64_param = value
        elif isinstance(value, int):
            slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        elif isinstance(value, str):
            slot.string_param = value
        else:
            slot.string_param = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def encode_infer_response(response: InferResponse, request: InferRequest | None = None) -> Any:
    """A ``ModelInferResponse``: raw outputs unless the request set ``binary_data_output`` false."""
    msg = pb.ModelInferResponse(model_name=response.model_name, model_version=response.model_version)
    if response.id is not None:
        msg.id = response.id
    encode_parameters(msg.parameters, response.parameters)
    typed = (
        request is not None
        and request.parameters.get("binary_data_output") is False
        and all(o.datatype in CONTENTS for o in response.outputs)
    )
    for output in response.outputs:
        tensor = msg.outputs.add(name=output.name, datatype=output.datatype, shape=output.data.shape)
        if typed:
            getattr(tensor.contents, CONTENTS[output.datatype]).extend(output.data.ravel().tolist())
        else:
            msg.raw_output_contents.append(binary.encode_tensor(output.data))
    return msg


def encode_metadata(meta: ModelMetadata) -> Any:
    return pb.ModelMetadataResponse(
        name=meta.name,
        versions=[str(v) for v in meta.versions],
        platform=meta.platform,
        inputs=_specs(meta.signature.inputs),
        outputs=_specs(meta.signature.outputs),
    )


def _specs(specs: Iterable[TensorSpec]) -> list[Any]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in specs
    ]


def encode_index(entries: Iterable[IndexEntry]) -> Any:
    msg = pb.RepositoryIndexResponse()
    for e in entries:
        msg.models.add(
            name=e.name,
            version="" if e.version is None else str(e.version),
            state="" if e.state is None else e.state.value,
            reason=e.reason,
        )
    return msg
