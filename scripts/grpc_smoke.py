"""Start a server on an empty repository and talk v2 gRPC to it with modelserve's own messages.

CI runs this in a fresh environment with the newest protobuf runtime (the test environment gets
protobuf 6.x, which tritonclient and kserve pin), to show that the schema loads under both.
"""

from __future__ import annotations

import sys
import tempfile

import grpc
from google.protobuf import __version__ as protobuf_version

from modelserve import testing
from modelserve.protocol.v2.grpc import codec
from modelserve.protocol.v2.grpc import messages as pb

SERVICE = "/inference.GRPCInferenceService/"


def main() -> int:
    with tempfile.TemporaryDirectory() as repo, testing.run(repo) as srv, grpc.insecure_channel(srv.grpc_target) as ch:
        live = pb.ServerLiveResponse.FromString(ch.unary_unary(SERVICE + "ServerLive")(b"", timeout=10))
        meta = pb.ServerMetadataResponse.FromString(ch.unary_unary(SERVICE + "ServerMetadata")(b"", timeout=10))
        request = pb.ModelInferRequest(model_name="absent")
        request.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
        assert codec.decode_infer_request(request).inputs[0].data.tolist() == [1.0]
        try:
            ch.unary_unary(SERVICE + "ModelInfer")(request.SerializeToString(), timeout=10)
        except grpc.RpcError as exc:
            status = exc.code()
        else:
            status = grpc.StatusCode.OK
    print(f"protobuf {protobuf_version}: live={live.live} server={meta.name} unknown model -> {status.name}")
    return 0 if live.live and meta.name == "modelserve" and status is grpc.StatusCode.NOT_FOUND else 1


if __name__ == "__main__":
    sys.exit(main())
