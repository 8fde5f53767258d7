"""modelserve's gRPC schema against Triton's: same names, field numbers, types, and methods.

Triton's ``grpc_service.proto`` ships compiled inside ``tritonclient.grpc``; every message and
method modelserve declares must exist there with identical wire shapes, or Triton's clients break.
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from tritonclient.grpc import service_pb2 as triton

from modelserve.protocol.v2.grpc import messages

OURS = messages.FILE
THEIRS = triton.DESCRIPTOR


def _walk(desc: Descriptor) -> list[Descriptor]:
    return [desc, *(d for nested in desc.nested_types for d in _walk(nested))]


OUR_MESSAGES = [d for top in OURS.message_types_by_name.values() for d in _walk(top) if not d.GetOptions().map_entry]


def _shape(field: FieldDescriptor) -> tuple[str, int, int, bool, str]:
    target = field.message_type.full_name if field.message_type is not None else ""
    repeated = field.label == FieldDescriptor.LABEL_REPEATED
    return field.name, field.number, field.type, repeated, target


@pytest.mark.parametrize("ours", OUR_MESSAGES, ids=lambda d: d.full_name)
def test_message_matches_triton(ours: Descriptor) -> None:
    theirs = THEIRS.pool.FindMessageTypeByName(ours.full_name)
    for field in ours.fields:
        assert field.number in theirs.fields_by_number, f"{ours.full_name}.{field.name} is not in Triton's schema"
        assert _shape(field) == _shape(theirs.fields_by_number[field.number])
    for oneof in ours.oneofs:
        assert [f.number for f in oneof.fields] == [f.number for f in theirs.oneofs_by_name[oneof.name].fields]


def test_service_methods_match_triton() -> None:
    ours = OURS.services_by_name["GRPCInferenceService"]
    theirs = THEIRS.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"
    for method in ours.methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            other.input_type.full_name,
            other.output_type.full_name,
        )
        assert (method.client_streaming, method.server_streaming) == (other.client_streaming, other.server_streaming)
    assert {m.name for m in ours.methods} >= {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
        "ModelStreamInfer", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
    }  # fmt: skip
