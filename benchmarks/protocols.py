"""One inference sent three ways: v2 REST JSON, v2 REST with binary tensors, and gRPC ModelInfer.

What it measures: requests per second, p50 and p99 latency, errors, and the CPU use of both sides,
of one modelserve process serving an ONNX ``Identity`` model (input ``X`` FP32 ``[-1, -1]``,
output ``Y``; built by this script into a temporary repository) for FP32 tensors of 1×16 and
64×1000 (``--payloads``), at 1, 8 and 32 concurrent keep-alive connections, as

- ``REST JSON``: ``POST /v2/models/identity/infer``, the tensor as a flat JSON ``data`` list (the
  shortest decimal that round-trips each float32, as orjson writes it); the reply is JSON too;
- ``REST binary``: the same URL with the binary tensor extension both ways: a JSON header of
  ``Inference-Header-Content-Length`` bytes with ``binary_data_size``, then the raw little-endian
  tensor, and the request parameter ``binary_data_output: true`` so the reply is binary as well;
- ``gRPC``: ``inference.GRPCInferenceService/ModelInfer`` with the tensor in ``raw_input_contents``
  (the reply carries ``raw_output_contents``), over HTTP/2 without TLS.

Every row is compared with ``REST JSON`` of the same payload and concurrency (``vs JSON``), and
``tensor MB/s`` is req/s × the input tensor's size (4 × rows × cols bytes; 10^6 bytes per MB). The
same tensor comes back in every reply, so the wire carries at least twice that.

Run it from the repository root (needs ``wrk``, Debian package ``wrk``, and ``h2load``, Debian
package ``nghttp2-client``)::

    python benchmarks/protocols.py [--duration 10] [--warmup 2] [--connections 1,8,32]
                                   [--payloads 1x16,64x1000] [--rounds 1] [--json results.json]

It starts ``modelserve serve`` on ports 0 (see ``_common.py``), pins it to one core and the load
generator (one thread) to another, and sends each request once with Python clients (httpx, grpcio)
before measuring: each reply must be a success and hold exactly the tensor that was sent. The exit
status is 1 if any cell had errors.

Caveats:

- The machine is shared and noisy: trust the ratios measured in the same run more than absolute
  figures, and use ``--rounds 3`` (medians; the three protocols interleaved, A B C A B C) for
  numbers worth quoting. ``--duration 3`` is a smoke test, not a measurement.
- REST is driven by ``wrk`` (HTTP/1.1), gRPC by ``h2load`` (HTTP/2, one stream per connection at a
  time, ``-m 1``): both are closed-loop, one request in flight per connection, so their latency
  percentiles suffer from coordinated omission alike. wrk's percentiles are its own; h2load prints
  none, so they come from its ``--log-file`` (time from request start to end of response).
- A gRPC error still answers HTTP 200, with ``grpc-status`` in the trailers, which h2load does not
  read. But an error reply is trailers-only, without a message, so ``errors`` for gRPC adds the
  replies that are missing from h2load's count of DATA bytes (every good reply is a
  ``ModelInferResponse`` of the size seen in the check before measuring) to h2load's non-2xx and
  failed requests. For REST, ``errors`` is wrk's count (status >= 400, socket errors) plus the
  replies missing from the bytes wrk read, each good reply being at least as long as the checked one.
- A load generator above ~80 % of its core (``!``) is measuring itself, not the server. At
  64×1000 the JSON rows move ~1.4 MB of text per request, which costs the load generator too.

The module runs a little over STYLE's ~400 lines: the three encoders and their checks stay side by
side, so that a reader sees the same inference three ways in one place.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnx
import orjson
from _common import (
    LOADGEN_CPU_LIMIT,
    WRK_DONE_LUA,
    Pinning,
    Server,
    add_grid_arguments,
    check_grid_arguments,
    measured,
    median_rows,
    run_loadgen,
    run_wrk,
    running_server,
    write_json,
)
from onnx import TensorProto, helper

from modelserve.protocol.v2.grpc import messages

MODEL = "identity"
INFER_PATH = f"/v2/models/{MODEL}/infer"
GRPC_PATH = f"/{messages.SERVICE}/ModelInfer"
PROTOCOLS = ("REST JSON", "REST binary", "gRPC")
BASELINE = "REST JSON"
H2LOAD_FINISHED = re.compile(r"^finished in .*?, ([\d.]+) req/s", re.MULTILINE)
H2LOAD_REQUESTS = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", re.MULTILINE)
H2LOAD_STATUS = re.compile(r"^status codes: (\d+) 2xx", re.MULTILINE)
H2LOAD_DATA = re.compile(r"^traffic: .*\((\d+)\) data$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Payload:
    rows: int
    cols: int

    @property
    def name(self) -> str:
        return f"{self.rows}x{self.cols}"

    @property
    def tensor_bytes(self) -> int:
        return 4 * self.rows * self.cols

    def tensor(self) -> np.ndarray:
        return np.random.default_rng(0).standard_normal((self.rows, self.cols)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Request:
    """One payload encoded for one protocol: the bytes the load generator sends, and how."""

    payload: Payload
    protocol: str
    body: Path  # the exact request body; for gRPC the length-prefixed message
    body_bytes: int
    lua: Path | None  # wrk's script (REST)
    reply_bytes: int  # the reply's body, as seen in the check (gRPC: the length-prefixed message)


@dataclass(frozen=True, slots=True)
class Cell:
    """One load-generator run. CPU figures are % of one core over ``wall_s``."""

    payload: str
    protocol: str
    connections: int
    round: int
    requests: int
    req_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_pct: float
    loadgen_cpu_pct: float
    wall_s: float


# --- the model and the requests -----------------------------------------------------------------


def model_repository(scratch: Path) -> Path:
    """A repository with one model, ``identity``: Y = X, both FP32 of shape [-1, -1]."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["X"], ["Y"])],
        MODEL,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", "M"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", "M"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the onnxruntime versions this project supports all read
    onnx.checker.check_model(model)
    path = scratch / "models" / MODEL / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(model.SerializeToString())
    return scratch / "models"


def _tensor_header(x: np.ndarray) -> dict[str, Any]:
    return {"name": "X", "shape": list(x.shape), "datatype": "FP32"}


def json_body(x: np.ndarray) -> bytes:
    body: bytes = orjson.dumps({"inputs": [_tensor_header(x) | {"data": x.ravel()}]}, option=orjson.OPT_SERIALIZE_NUMPY)
    return body


def binary_body(x: np.ndarray) -> tuple[bytes, int]:
    """The body and its JSON header's length (the ``Inference-Header-Content-Length``)."""
    tensor = _tensor_header(x) | {"parameters": {"binary_data_size": x.nbytes}}
    header = orjson.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
    return header + x.astype("<f4").tobytes(), len(header)


def grpc_message(x: np.ndarray) -> bytes:
    tensor = messages.ModelInferRequest.InferInputTensor(**_tensor_header(x))
    request = messages.ModelInferRequest(
        model_name=MODEL, inputs=[tensor], raw_input_contents=[x.astype("<f4").tobytes()]
    )
    body: bytes = request.SerializeToString()
    return body


def _expect(what: str, ok: bool, detail: object) -> None:
    if not ok:
        raise RuntimeError(f"{what}: the check before measuring failed: {detail}")


def check_json(client: httpx.Client, body: bytes, x: np.ndarray) -> int:
    """Send ``body`` once; the reply must be 200 with Y == x. Returns the reply's size."""
    r = client.post(INFER_PATH, content=body, headers={"Content-Type": "application/json"})
    _expect("REST JSON", r.status_code == 200, f"status {r.status_code}: {r.text[:500]}")
    out = r.json()["outputs"][0]
    _expect("REST JSON", out["shape"] == list(x.shape), out["shape"])
    _expect("REST JSON", np.array_equal(np.asarray(out["data"], dtype=np.float32).reshape(x.shape), x), "Y != X")
    return len(r.content)


def check_binary(client: httpx.Client, body: bytes, header_length: int, x: np.ndarray) -> int:
    """Send ``body`` once; the reply must be 200 and binary, with Y == x. Returns the reply's size."""
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_length)}
    r = client.post(INFER_PATH, content=body, headers=headers)
    _expect("REST binary", r.status_code == 200, f"status {r.status_code}: {r.text[:500]}")
    length = int(r.headers.get("inference-header-content-length", "-1"))
    _expect("REST binary", 0 <= length <= len(r.content), f"Inference-Header-Content-Length {length}")
    out = orjson.loads(r.content[:length])["outputs"][0]
    _expect("REST binary", out.get("parameters", {}).get("binary_data_size") == x.nbytes, out)
    _expect("REST binary", r.content[length:] == x.astype("<f4").tobytes(), "Y != X")
    return len(r.content)


def check_grpc(target: str, body: bytes, x: np.ndarray) -> int:
    """Send ``body`` once; the call must end OK with Y == x. Returns the length-prefixed reply's size."""
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(GRPC_PATH)  # no (de)serializers: bytes in, bytes out
        try:
            reply, outcome = call.with_call(body, timeout=30)
        except grpc.RpcError as exc:
            raise RuntimeError(f"gRPC: the check before measuring failed: {exc}") from None
    _expect("gRPC", outcome.code() == grpc.StatusCode.OK, outcome.code())
    response = messages.ModelInferResponse.FromString(reply)
    _expect("gRPC", list(response.outputs[0].shape) == list(x.shape), response.outputs[0])
    _expect("gRPC", response.raw_output_contents[0] == x.astype("<f4").tobytes(), "Y != X")
    return 5 + len(reply)


def _lua(body: Path, content_type: str, header_length: int | None) -> Path:
    lines = [
        'wrk.method = "POST"',
        f'local file = assert(io.open([==[{body}]==], "rb"))',  # a file: wrk.body may hold any bytes
        'wrk.body = file:read("*a")',
        "file:close()",
        f'wrk.headers["Content-Type"] = "{content_type}"',
    ]
    if header_length is not None:
        lines.append(f'wrk.headers["Inference-Header-Content-Length"] = "{header_length}"')
    path = body.with_name(body.name + ".lua")  # one per body: 1x16.json.lua, 1x16.bin.lua
    path.write_text("\n".join(lines) + "\n" + WRK_DONE_LUA)
    return path


def prepare(server: Server, payload: Payload, scratch: Path) -> list[Request]:
    """The three requests for ``payload``, each checked once against the server, in PROTOCOLS order."""
    x = payload.tensor()
    json_file, binary_file, grpc_file = (scratch / f"{payload.name}.{kind}" for kind in ("json", "bin", "grpc"))
    as_json = json_body(x)
    binary, header_length = binary_body(x)
    message = grpc_message(x)
    framed = b"\0" + len(message).to_bytes(4, "big") + message  # gRPC frame: uncompressed, length, message
    for path, body in ((json_file, as_json), (binary_file, binary), (grpc_file, framed)):
        path.write_bytes(body)
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        json_reply = check_json(client, as_json, x)
        binary_reply = check_binary(client, binary, header_length, x)
    grpc_reply = check_grpc(server.grpc_target, message, x)
    json_lua = _lua(json_file, "application/json", None)
    binary_lua = _lua(binary_file, "application/octet-stream", header_length)
    return [
        Request(payload, "REST JSON", json_file, len(as_json), json_lua, json_reply),
        Request(payload, "REST binary", binary_file, len(binary), binary_lua, binary_reply),
        Request(payload, "gRPC", grpc_file, len(framed), None, grpc_reply),
    ]


# --- load generators ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    requests: int
    req_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def drive_wrk(pinning: Pinning, server: Server, request: Request, connections: int, seconds: int) -> Outcome:
    assert request.lua is not None
    r = run_wrk(pinning, server.http_url + INFER_PATH, request.lua, connections, seconds)
    # every good reply is at least as long as the checked one: fewer bytes mean shorter (error) replies
    short = max(0, r["requests"] - r["bytes"] // request.reply_bytes)
    return Outcome(
        requests=r["requests"],
        req_per_s=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        errors=r["status_errors"] + r["socket_errors"] + short,
    )


def drive_h2load(pinning: Pinning, server: Server, request: Request, connections: int, seconds: int) -> Outcome:
    """h2load, one thread, ``connections`` clients with one stream each; latencies from its log file."""
    log = request.body.with_name(request.body.name + ".log")
    command = [*pinning.loadgen, "h2load", "-n0", "-D", str(seconds), "-t1", f"-c{connections}", "-m1"]
    command += ["-d", str(request.body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    out = run_loadgen([*command, f"--log-file={log}", f"http://{server.grpc_target}{GRPC_PATH}"], seconds)
    found = [p.search(out) for p in (H2LOAD_FINISHED, H2LOAD_REQUESTS, H2LOAD_STATUS, H2LOAD_DATA)]
    if not all(found):
        raise RuntimeError(f"cannot read h2load's output:\n{out}")
    finished, counts, status, data = (m.groups() for m in found if m is not None)
    done, succeeded = int(counts[2]), int(counts[3])
    # a good reply carries exactly one message of reply_bytes; a gRPC error carries none. Replies
    # still in flight at the end may add a part of a message, hence the floor division.
    missing = max(0, succeeded - int(data[0]) // request.reply_bytes)
    durations = [int(line.split("\t")[2]) for line in log.read_text().splitlines() if line]
    log.unlink()
    p50, p99 = np.percentile(durations, [50, 99]).tolist() if durations else [float("nan")] * 2
    return Outcome(done, float(finished[0]), p50 / 1000, p99 / 1000, done - int(status[0]) + missing)


@dataclass(frozen=True, slots=True)
class Target:
    server: Server
    pinning: Pinning
    duration_s: int
    warmup_s: int


def measure(target: Target, request: Request, connections: int, round_: int) -> Cell:
    """Warm up, then drive ``request`` for ``target.duration_s`` while tracking both sides' CPU."""
    drive = drive_h2load if request.protocol == "gRPC" else drive_wrk
    drive(target.pinning, target.server, request, connections, target.warmup_s)
    outcome, usage = measured(
        target.server.pid, lambda: drive(target.pinning, target.server, request, connections, target.duration_s)
    )
    return Cell(request.payload.name, request.protocol, connections, round_, **asdict(outcome), **asdict(usage))


def run_grid(target: Target, requests: Sequence[Request], connections: Sequence[int], rounds: int) -> list[Cell]:
    """Every request at every concurrency; the protocols of one payload interleaved (A B C A B C)."""
    cells = []
    for round_ in range(1, rounds + 1):
        for conns in connections:
            for request in requests:
                cell = measure(target, request, conns, round_)
                print(
                    f"  round {round_} {cell.payload:<8} {cell.protocol:<11} c={conns:<3} {cell.req_per_s:8.0f} req/s"
                    f"  errors {cell.errors}  loadgen CPU {cell.loadgen_cpu_pct:.0f}%",
                    file=sys.stderr,
                )
                cells.append(cell)
    return cells


# --- results ------------------------------------------------------------------------------------


def summarize(cells: Sequence[Cell], requests: Sequence[Request]) -> list[dict[str, Any]]:
    """One row per (payload, protocol, connections): medians over rounds, the ratio, tensor MB/s."""
    values = ("req_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "loadgen_cpu_pct")
    rows = median_rows(cells, ("payload", "protocol", "connections"), values)
    tensor_bytes = {r.payload.name: r.payload.tensor_bytes for r in requests}
    baseline = {(r["payload"], r["connections"]): r["req_per_s"] for r in rows if r["protocol"] == BASELINE}
    for row in rows:
        base = baseline.get((row["payload"], row["connections"]))
        row["vs_json"] = row["req_per_s"] / base if base else None
        row["tensor_mb_per_s"] = row["req_per_s"] * tensor_bytes[row["payload"]] / 1e6
    order = {name: i for i, name in enumerate(PROTOCOLS)}
    return sorted(rows, key=lambda r: (list(tensor_bytes).index(r["payload"]), r["connections"], order[r["protocol"]]))


def print_table(rows: Sequence[dict[str, Any]], requests: Sequence[Request]) -> None:
    columns = "payload protocol conns req/s p50_ms p99_ms vs_JSON tensor_MB/s errors server_CPU% loadgen_CPU%"
    print("| " + " | ".join(c.replace("_", " ") for c in columns.split()) + " |")
    print("|---|---|" + "--:|" * 9)
    for r in rows:
        flag = " !" if r["loadgen_cpu_pct"] > LOADGEN_CPU_LIMIT else ""
        ratio = f"{r['vs_json']:.2f}" if r["vs_json"] is not None else "-"
        print(
            f"| {r['payload']} | {r['protocol']} | {r['connections']} | {r['req_per_s']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {ratio} | {r['tensor_mb_per_s']:.2f} | {r['errors']} "
            f"| {r['server_cpu_pct']:.0f} | {r['loadgen_cpu_pct']:.0f}{flag} |"
        )
    print()
    sizes = "; ".join(f"{q.payload.name} {q.protocol} {q.body_bytes} B → {q.reply_bytes} B" for q in requests)
    print(f"Request → reply body sizes: {sizes}.")
    print("tensor MB/s = req/s × input tensor bytes / 10^6; vs JSON = req/s ÷ REST JSON's, same payload and conns.")
    if any(r["loadgen_cpu_pct"] > LOADGEN_CPU_LIMIT for r in rows):
        print(f"! the load generator used more than {LOADGEN_CPU_LIMIT:.0f}% of its core: that row may measure it")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_grid_arguments(parser)
    parser.add_argument(
        "--payloads", default="1x16,64x1000", help="FP32 tensor shapes ROWSxCOLS (default 1x16,64x1000)"
    )
    args = parser.parse_args(argv)
    check_grid_arguments(parser, args)
    try:
        shapes = [Payload(*map(int, p.strip().split("x", 1))) for p in args.payloads.split(",") if p.strip()]
        args.payloads = list(dict.fromkeys(shapes))  # a payload named twice would share its files and rows
    except (TypeError, ValueError):
        parser.error(f"--payloads must be comma-separated ROWSxCOLS, e.g. 1x16,64x1000; got {args.payloads!r}")
    if not args.payloads or min(min(p.rows, p.cols) for p in args.payloads) < 1:
        parser.error("--payloads needs at least one shape, each dimension >= 1")
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian package {package})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pinning = Pinning.detect()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="protocols-")))
        server = stack.enter_context(running_server(model_repository(scratch), pinning))
        requests = [q for payload in args.payloads for q in prepare(server, payload, scratch)]
        target = Target(server, pinning, args.duration, args.warmup)
        cells = run_grid(target, requests, args.connections, args.rounds)
    rows = summarize(cells, requests)
    print_table(rows, requests)
    if args.json is not None:
        config = {k: v for k, v in vars(args).items() if k not in ("json", "payloads")}
        config |= {"payloads": [p.name for p in args.payloads], "pinning": asdict(pinning)}
        config |= {"cpus": len(os.sched_getaffinity(0)), "model": f"{MODEL}: ONNX Identity, FP32 [-1, -1]"}
        config["requests"] = [
            {
                "payload": q.payload.name,
                "protocol": q.protocol,
                "body_bytes": q.body_bytes,
                "reply_bytes": q.reply_bytes,
            }
            for q in requests
        ]
        write_json(args.json, config, rows, cells)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
