"""Compile modelserve's gRPC schema into the descriptor set the server loads at import.

    python scripts/gen_proto.py           # rewrite modelserve/protocol/v2/grpc/inference.desc
    python scripts/gen_proto.py --check   # exit 1 if the checked-in file differs (CI)

Why a descriptor set and not ``*_pb2.py`` modules: generated modules register their messages in
protobuf's process-wide default pool, where Triton's client (``tritonclient.grpc``) and KServe's
already register the same ``inference.*`` names; two of them in one process fail with "duplicate
symbol". modelserve loads its schema into a private pool instead (see ``messages.py``), which
also frees it from the gencode/runtime version checks of generated code. Needs the grpcio-tools
version pinned in pyproject.toml (the dev extra), so that regeneration is reproducible.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent.parent / "modelserve" / "protocol" / "v2" / "grpc"
PROTO = "inference.proto"
DESC = HERE / "inference.desc"


def compile_to(out: Path) -> bytes:
    code = protoc.main(["protoc", f"-I{HERE}", f"--descriptor_set_out={out}", PROTO])
    if code != 0:
        raise SystemExit(f"protoc failed on {HERE / PROTO} (exit {code})")
    return out.read_bytes()


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_to(Path(tmp) / "inference.desc")
    if "--check" in argv:
        if not DESC.exists() or DESC.read_bytes() != fresh:
            print(f"{DESC} is stale: run python scripts/gen_proto.py and commit the result", file=sys.stderr)
            return 1
        print(f"{DESC.name} is up to date")
        return 0
    DESC.write_bytes(fresh)
    print(f"wrote {DESC} ({len(fresh)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
