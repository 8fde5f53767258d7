"""Side by side with Seldon MLServer: one scikit-learn model served by each, over REST and gRPC.

What it measures, in one run, on the same machine, with the same model and the same request bytes:

- requests per second, p50 and p99 latency, errors, and the CPU use of the server and of the load
  generator (% of one core), for ``modelserve serve`` and for ``mlserver start`` (MLServer with
  ``"parallel_workers": 0``, see ``../shared/bench/NOTES.md``), at 1, 8, 32 and 128 concurrent
  keep-alive connections, for one scikit-learn ``LogisticRegression`` on iris (4 features, one row
  of FP64 per request, sample 0, label 0), sent as
  - ``REST JSON``: ``POST /v2/models/iris/infer``, the same JSON body for both servers;
  - ``REST binary``: the binary tensor extension both ways (``Inference-Header-Content-Length``,
    ``binary_data_output``); a server that does not answer it correctly is marked ``n/a``
    (MLServer 1.7 answers 500);
  - ``gRPC``: ``inference.GRPCInferenceService/ModelInfer`` with ``raw_input_contents``;
  and the ratios modelserve / MLServer of req/s and of p99;
- the in-process limit: one ``predict_proba`` (and ``predict``) of the estimator and one
  onnxruntime call of its ONNX twin (skl2onnx, ``zipmap`` off), batch 1 and 64, µs per call, on the
  server's core with one thread;
- the HTTP stack ceiling: modelserve's ``GET /v2/health/live`` at 32 connections, and the ONNX twin
  over REST JSON (FP32) at 32 connections as a percentage of it;
- memory and load time: a fresh modelserve with 1, 10 and 100 copies of the ONNX twin, seconds from
  its start until ``/v2/health/ready`` answers 200, and its RSS then;
- a table of the targets of the comparison (issue 6), each met or missed.

The model is trained once and written three ways into a temporary directory: ``model.joblib`` (for
MLServer's ``mlserver_sklearn.SKLearnModel``), ``model.skops`` (modelserve's safe scikit-learn
format) and ``model.onnx``. MLServer runs from its own virtual environment, created on the first run
in ``~/.cache/modelserve-bench/mlserver-venv`` (``--mlserver-venv``) with ``pip install mlserver
mlserver-sklearn scikit-learn==<ours>`` (the joblib file must be read by the version that wrote
it), and reused while it imports and has that scikit-learn.

Run it from the repository root (needs ``wrk``, Debian package ``wrk``; ``h2load``, Debian package
``nghttp2-client``; the ``examples`` extra; PyPI on the first run)::

    python benchmarks/peers.py [--duration 8] [--warmup 2] [--rounds 2] [--connections 1,8,32,128]
                               [--json results.json] [--mlserver-venv DIR]

The defaults take about 8 minutes on the project's 2-core machine (plus ~1 minute to install
MLServer on the first run). Each server runs alone, pinned to the first core, the load generator
(one thread) to the second, and is stopped by its PID; every round starts modelserve, measures it,
stops it, then does the same with MLServer (A B A B), and the tables show medians over rounds.
Before measuring, each scenario's request is sent once (httpx, grpcio) and must predict label 0.
The exit status is 1 if MLServer could not be installed or started (modelserve's rows are still
printed) or any modelserve cell had errors; MLServer's errors (it times out requests when
overloaded) are reported, and a missed target alone does not fail the run.

Caveats:

- The machine is shared and noisy: quote the ratios of the same run, with ``--rounds 2`` or more.
- Both servers run their default configuration otherwise. modelserve batches concurrent requests
  (adaptive batching, on by default, no added delay); MLServer's adaptive batching is opt-in
  (``max_batch_size`` in model-settings.json) and stays off, its default. The request names no
  outputs, so MLServer answers ``predict`` only while modelserve answers ``label`` and
  ``probabilities`` (``predict`` and ``predict_proba``): modelserve does more work per request.
- wrk and h2load are closed-loop (one request in flight per connection): their percentiles suffer
  from coordinated omission alike. REST errors are wrk's: status >= 400 and socket errors, which
  include timeouts (no reply within 2 s, wrk's default); a timed-out request's latency is left out
  of wrk's percentiles, so an overloaded server's p99 is an underestimate. A gRPC error still
  answers HTTP 200, so gRPC errors add, to h2load's non-2xx, the replies missing from its count of
  DATA bytes (every good reply has the size of the checked one; see ``protocols.py``).
- MLServer logs its configured ports, not bound ones, so its ports come from ``_common.free_port``
  (bind to port 0, close, pass the number on): a race STYLE.md's habit 10 avoids for modelserve, put
  up with here for a peer that cannot report a bound port.
- A load generator above ~80 % of its core (``!``) measures itself. ``health/live`` is the
  request that costs wrk most (about a third of its core at 30k req/s).

The module runs past STYLE's ~400 lines: two servers, three protocols, and four side measurements
share one run by design (the ratios are only worth quoting when measured together).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
from _common import (
    LOADGEN_CPU_LIMIT,
    Pinning,
    Server,
    add_grid_arguments,
    check_grid_arguments,
    child_pids,
    free_port,
    measured,
    median_rows,
    rss_bytes,
    run_h2load,
    run_wrk,
    running_server,
    stop,
    wrk_script,
)

from modelserve.protocol.v2.grpc import messages

MODEL, ONNX_MODEL = "iris", "iris-onnx"  # the scikit-learn model (same name on both servers); its ONNX twin
ROW = [5.1, 3.5, 1.4, 0.2]  # iris sample 0, setosa: every check expects label 0
LABEL_OUTPUTS = ("label", "predict", "output_label")  # modelserve sklearn, MLServer sklearn, ONNX (skl2onnx)
MODELSERVE, MLSERVER = "modelserve", "MLServer"
PROTOCOLS = ("REST JSON", "REST binary", "gRPC")
LIVE, ONNX = "health/live", "ONNX REST JSON"  # modelserve only, at EXTRA_CONNECTIONS
EXTRA_CONNECTIONS = 32
MODEL_COUNTS = (1, 10, 100)
GRPC_PATH = f"/{messages.SERVICE}/ModelInfer"
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
DEFAULT_VENV = Path.home() / ".cache" / "modelserve-bench" / "mlserver-venv"
DTYPES = {"INT64": "<i8", "INT32": "<i4", "FP64": "<f8", "FP32": "<f4"}


# --- the model, written three ways ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Models:
    estimator: Any
    onnx: bytes
    modelserve_repo: Path  # iris/1/model.skops, iris-onnx/1/model.onnx
    mlserver_dir: Path  # iris/model.joblib + model-settings.json; settings.json written per start


def build_models(scratch: Path) -> Models:
    import joblib
    import skops.io as sio
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    estimator = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    onnx_model = to_onnx(
        estimator,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(estimator): {"zipmap": False}},
        target_opset=17,
    ).SerializeToString()
    repo, mlserver = scratch / "modelserve", scratch / "mlserver"
    for folder in (repo / MODEL / "1", repo / ONNX_MODEL / "1", mlserver / MODEL):
        folder.mkdir(parents=True)
    sio.dump(estimator, repo / MODEL / "1" / "model.skops")
    (repo / ONNX_MODEL / "1" / "model.onnx").write_bytes(onnx_model)
    joblib.dump(estimator, mlserver / MODEL / "model.joblib")
    parameters = {"uri": "./model.joblib", "version": "1"}
    settings = {"name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel", "parameters": parameters}
    (mlserver / MODEL / "model-settings.json").write_text(json.dumps(settings))
    return Models(estimator, onnx_model, repo, mlserver)


def many_models(onnx_model: bytes, count: int, scratch: Path) -> Path:
    """A repository of ``count`` copies of the ONNX twin, named m000, m001, ..."""
    repo = scratch / f"many-{count}"
    for i in range(count):
        (repo / f"m{i:03d}" / "1").mkdir(parents=True)
        (repo / f"m{i:03d}" / "1" / "model.onnx").write_bytes(onnx_model)
    return repo


# --- MLServer: its virtual environment and its process -------------------------------------------


def mlserver_install(venv: Path, sklearn_version: str) -> tuple[Path | None, str]:
    """(the ``mlserver`` command, MLServer's version), or (None, why it cannot be had)."""
    found = _mlserver_version(venv, sklearn_version)
    if found is not None:
        return venv / "bin" / "mlserver", found
    print(f"installing MLServer with scikit-learn=={sklearn_version} into {venv} (about a minute)", file=sys.stderr)
    steps = [[sys.executable, "-m", "venv", str(venv)]] if not (venv / "bin" / "python").exists() else []
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps.append([*pip, "mlserver", "mlserver-sklearn", f"scikit-learn=={sklearn_version}"])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            return None, f"{' '.join(step[:4])} ... took more than 900 s"
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING")]
            return None, f"{' '.join(step)} failed ({done.returncode}):\n" + "\n".join(errors[-15:])
    found = _mlserver_version(venv, sklearn_version)
    if found is None:
        return None, f"{venv}: mlserver and mlserver_sklearn with scikit-learn {sklearn_version} do not import"
    return venv / "bin" / "mlserver", found


def _mlserver_version(venv: Path, sklearn_version: str) -> str | None:
    """MLServer's version if ``venv`` imports it, its sklearn runtime, and our scikit-learn version."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    probe = (
        "import importlib.metadata as m, mlserver_sklearn, sklearn; print(m.version('mlserver'), sklearn.__version__)"
    )
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    found = done.stdout.split()
    return found[0] if done.returncode == 0 and found[1:] == [sklearn_version] else None


@contextmanager
def running_mlserver(command: Path, folder: Path, pinning: Pinning) -> Iterator[Server]:
    """``mlserver start folder`` on 127.0.0.1 and free ports, pinned; yield it once the model is
    ready; SIGTERM it by PID on exit. Raises RuntimeError with its log's tail if it does not start."""
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    http, grpc_port, metrics = sorted(ports)
    settings = {"parallel_workers": 0, "host": "127.0.0.1", "http_port": http, "grpc_port": grpc_port}
    (folder / "settings.json").write_text(json.dumps(settings | {"metrics_port": metrics}))
    log_path = folder / "mlserver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*pinning.server, str(command), "start", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
    try:
        _wait_ok(f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready", proc, log_path, timeout_s=120)
        if child_pids(proc.pid):
            print(f"warning: MLServer {proc.pid} has child processes: its CPU % counts only its own", file=sys.stderr)
        yield Server(proc.pid, f"http://127.0.0.1:{http}", f"127.0.0.1:{grpc_port}")
    finally:
        stop(proc)


def _wait_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"MLServer exited with {proc.returncode}:\n{tail}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s} s")


# --- requests and their checks -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """One request as the load generator sends it: wrk (``lua``) for REST, h2load for gRPC."""

    protocol: str
    path: str  # URL path (REST)
    body: Path | None
    lua: Path | None
    reply_bytes: int = 0  # gRPC: the length-prefixed reply of the check


@dataclass(frozen=True, slots=True)
class Bodies:
    json: bytes  # sklearn, FP64
    binary: bytes
    binary_header: int  # Inference-Header-Content-Length
    grpc: bytes  # the serialized ModelInferRequest, unframed
    onnx_json: bytes  # the ONNX twin, FP32


def make_bodies() -> Bodies:
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP64"}
    header = orjson.dumps(
        {"inputs": [tensor | {"parameters": {"binary_data_size": 32}}], "parameters": {"binary_data_output": True}}
    )
    request = messages.ModelInferRequest(
        model_name=MODEL,
        inputs=[messages.ModelInferRequest.InferInputTensor(**tensor)],
        raw_input_contents=[np.asarray(ROW, "<f8").tobytes()],
    )
    return Bodies(
        json=orjson.dumps({"inputs": [tensor | {"data": ROW}]}),
        binary=header + np.asarray(ROW, "<f8").tobytes(),
        binary_header=len(header),
        grpc=request.SerializeToString(),
        onnx_json=orjson.dumps({"inputs": [tensor | {"datatype": "FP32", "data": ROW}]}),
    )


def write_loads(bodies: Bodies, scratch: Path) -> dict[str, Load]:
    """Every request's body file and wrk script, by protocol (gRPC's ``reply_bytes`` comes from the check)."""
    files = {"json": bodies.json, "bin": bodies.binary, "onnx.json": bodies.onnx_json}
    files["grpc"] = b"\0" + len(bodies.grpc).to_bytes(4, "big") + bodies.grpc  # uncompressed, length, message
    for name, data in files.items():
        (scratch / f"body.{name}").write_bytes(data)
    as_json = {"Content-Type": "application/json"}
    binary = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(bodies.binary_header)}
    infer = f"/v2/models/{MODEL}/infer"

    def rest(protocol: str, path: str, body: str | None, headers: dict[str, str] | None = None) -> Load:
        file = None if body is None else scratch / f"body.{body}"
        lua = wrk_script(scratch / f"{body or 'live'}.lua", "POST" if file else "GET", file, headers)
        return Load(protocol, path, file, lua)

    return {
        "REST JSON": rest("REST JSON", infer, "json", as_json),
        "REST binary": rest("REST binary", infer, "bin", binary),
        "gRPC": Load("gRPC", "", scratch / "body.grpc", None),
        LIVE: rest(LIVE, "/v2/health/live", None),
        ONNX: rest(ONNX, f"/v2/models/{ONNX_MODEL}/infer", "onnx.json", as_json),
    }


def _label(outputs: Sequence[dict[str, Any]], values: Callable[[int, dict[str, Any]], Any]) -> Any:
    for i, out in enumerate(outputs):
        if out["name"] in LABEL_OUTPUTS:
            return np.asarray(values(i, out)).ravel()[0]
    raise ValueError(f"no output named one of {LABEL_OUTPUTS} in {[o['name'] for o in outputs]}")


def check_json(client: httpx.Client, path: str, body: bytes) -> None:
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    if r.status_code != 200 or _label(r.json()["outputs"], lambda _, out: out["data"]) != 0:
        raise RuntimeError(f"POST {path} (JSON): expected 200 and label 0, got {r.status_code}: {r.text[:500]}")


def check_binary(client: httpx.Client, bodies: Bodies) -> str | None:
    """None if the binary extension answers label 0 both ways, else what went wrong."""
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(bodies.binary_header)}
    r = client.post(f"/v2/models/{MODEL}/infer", content=bodies.binary, headers=headers)
    length = int(r.headers.get("inference-header-content-length", "-1"))
    if r.status_code != 200 or not 0 <= length <= len(r.content):
        return f"status {r.status_code}, Inference-Header-Content-Length {length}: {r.content[:200]!r}"
    outputs, offset, blobs = orjson.loads(r.content[:length])["outputs"], length, []
    for out in outputs:
        size = out.get("parameters", {}).get("binary_data_size", 0)
        blobs.append(r.content[offset : offset + size])
        offset += size
    label = _label(outputs, lambda i, out: np.frombuffer(blobs[i], DTYPES.get(out["datatype"], "u1")))
    return None if blobs and label == 0 else f"label {label}, outputs {outputs}"


def check_grpc(target: str, bodies: Bodies) -> int:
    """Call ModelInfer once with grpcio: it must end OK with label 0. Returns the framed reply's size."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply, call = channel.unary_unary(GRPC_PATH).with_call(bodies.grpc, timeout=30)
        except grpc.RpcError as exc:
            raise RuntimeError(f"gRPC ModelInfer at {target}: {exc}") from None
    response = messages.ModelInferResponse.FromString(reply)
    outputs = [{"name": o.name, "datatype": o.datatype} for o in response.outputs]

    def values(i: int, out: dict[str, Any]) -> Any:
        if response.raw_output_contents:
            return np.frombuffer(response.raw_output_contents[i], DTYPES[out["datatype"]])
        return response.outputs[i].contents.int64_contents

    if call.code() != grpc.StatusCode.OK or _label(outputs, values) != 0:
        raise RuntimeError(f"gRPC ModelInfer at {target}: expected OK and label 0, got {call.code()}: {response}")
    return 5 + len(reply)


def verify(name: str, server: Server, loads: dict[str, Load], bodies: Bodies) -> list[Load]:
    """Check every scenario of ``name`` once; return the loads to measure (without an unsupported binary)."""
    chosen = []
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        check_json(client, loads["REST JSON"].path, bodies.json)
        chosen.append(loads["REST JSON"])
        problem = check_binary(client, bodies)
        if problem is None:
            chosen.append(loads["REST binary"])
        elif name == MODELSERVE:
            raise RuntimeError(f"modelserve, REST binary: {problem}")
        else:
            print(f"  {name} REST binary: n/a ({problem[:120]}...)", file=sys.stderr)
        grpc_load = loads["gRPC"]
        chosen.append(Load(grpc_load.protocol, "", grpc_load.body, None, check_grpc(server.grpc_target, bodies)))
        if name == MODELSERVE:
            check_json(client, loads[ONNX].path, bodies.onnx_json)
            if client.get(loads[LIVE].path).status_code != 200:
                raise RuntimeError("modelserve: GET /v2/health/live did not answer 200")
    return chosen


# --- measuring -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One load-generator run. CPU figures are % of one core over ``wall_s``."""

    server: str
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


def drive(pinning: Pinning, server: Server, load: Load, connections: int, seconds: int) -> tuple[Any, ...]:
    """One wrk or h2load run: (requests, req/s, p50 µs, p99 µs, errors)."""
    if load.lua is not None:
        r = run_wrk(pinning, server.http_url + load.path, load.lua, connections, seconds)
        errors = r["status_errors"] + r["socket_errors"]
        return r["requests"], r["requests"] / (r["duration_us"] / 1e6), r["p50_us"], r["p99_us"], errors
    assert load.body is not None
    r = run_h2load(pinning, f"http://{server.grpc_target}{GRPC_PATH}", load.body, GRPC_HEADERS, connections, seconds)
    missing = max(0, r["succeeded"] - r["data_bytes"] // load.reply_bytes)  # error replies carry no message
    return r["requests"], r["req_per_s"], r["p50_us"], r["p99_us"], r["requests"] - r["status_2xx"] + missing


def measure(name: str, server: Server, load: Load, connections: int, round_: int, args: argparse.Namespace) -> Cell:
    drive(args.pinning, server, load, connections, args.warmup)
    outcome, usage = measured(server.pid, lambda: drive(args.pinning, server, load, connections, args.duration))
    requests, req_per_s, p50, p99, errors = outcome
    cell = Cell(name, load.protocol, connections, round_, requests, req_per_s, p50 / 1000, p99 / 1000, errors,
                usage.server_cpu_pct, usage.loadgen_cpu_pct, usage.wall_s)  # fmt: skip
    print(
        f"  round {round_} {name:<10} {load.protocol:<14} c={connections:<3} {req_per_s:8.0f} req/s"
        f"  p99 {p99 / 1000:6.2f} ms  errors {errors}  server {usage.server_cpu_pct:.0f}%"
        f"  loadgen {usage.loadgen_cpu_pct:.0f}%",
        file=sys.stderr,
    )
    return cell


def segment(
    name: str, server: Server, loads: Sequence[Load], extras: Sequence[Load], round_: int, args: Any
) -> list[Cell]:
    """Every protocol of one server at every concurrency, then its extras at EXTRA_CONNECTIONS."""
    cells = [measure(name, server, load, conns, round_, args) for conns in args.connections for load in loads]
    return cells + [measure(name, server, load, EXTRA_CONNECTIONS, round_, args) for load in extras]


@dataclass(frozen=True, slots=True)
class LoadTime:
    models: int
    round: int
    ready_s: float
    rss_mib: float


def load_time(repo: Path, count: int, round_: int, pinning: Pinning) -> LoadTime:
    """Start modelserve on ``repo``; seconds until /v2/health/ready answers 200, and its RSS then."""
    started = time.monotonic()
    with running_server(repo, pinning) as server:
        ready_s = time.monotonic() - started
        rss = rss_bytes(server.pid)
        last = f"/v2/models/m{count - 1:03d}/infer"
        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            check_json(client, last, make_bodies().onnx_json)
    print(f"  round {round_} {count:>3} models: ready in {ready_s:.2f} s, RSS {rss / 2**20:.0f} MiB", file=sys.stderr)
    return LoadTime(count, round_, ready_s, rss / 2**20)


def in_process(models: Models, pinning: Pinning) -> list[dict[str, Any]]:
    """µs per call of scikit-learn and onnxruntime, batch 1 and 64, one thread, on the server's core."""
    import onnxruntime as ort
    from sklearn.datasets import load_iris
    from threadpoolctl import threadpool_limits

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(models.onnx, options, providers=["CPUExecutionProvider"])
    x64 = load_iris().data[:64]
    batches = {1: x64[:1], 64: x64}
    calls: dict[str, Callable[[np.ndarray], Any]] = {
        "scikit-learn predict_proba": models.estimator.predict_proba,
        "scikit-learn predict": models.estimator.predict,
        "onnxruntime run (ONNX twin)": lambda x: session.run(None, {"input": x.astype(np.float32)}),
    }
    affinity = os.sched_getaffinity(0)
    if pinning.server:
        os.sched_setaffinity(0, {int(pinning.server[-1])})
    rows = []
    try:
        with threadpool_limits(1):
            for what, call in calls.items():
                for batch, x in batches.items():
                    x = np.ascontiguousarray(x)
                    rows.append({"call": what, "batch": batch, "us_per_call": _us_per_call(lambda: call(x))})  # noqa: B023
    finally:
        os.sched_setaffinity(0, affinity)
    return rows


def _us_per_call(fn: Callable[[], Any], repeats: int = 5, seconds: float = 0.2) -> float:
    """Median over ``repeats`` of the mean time of a loop of calls lasting about ``seconds``."""
    fn()
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < 0.05:
        fn()
        n += 1
    loop = max(1, int(n * seconds / 0.05))
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(loop):
            fn()
        samples.append((time.perf_counter() - started) / loop * 1e6)
    return statistics.median(samples)


# --- results -------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def comparison(rows: Sequence[dict[str, Any]], unsupported: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """modelserve against MLServer per protocol and concurrency: req/s, p99, and their ratios."""
    by = {(r["server"], r["protocol"], r["connections"]): r for r in rows}
    table = []
    for protocol in PROTOCOLS:
        for conns in sorted({r["connections"] for r in rows if r["protocol"] == protocol}):
            ours, theirs = by.get((MODELSERVE, protocol, conns), {}), by.get((MLSERVER, protocol, conns), {})
            table.append(
                {
                    "protocol": protocol,
                    "connections": conns,
                    "modelserve_req_per_s": ours.get("req_per_s"),
                    "mlserver_req_per_s": theirs.get("req_per_s"),
                    "req_per_s_ratio": _ratio(ours.get("req_per_s"), theirs.get("req_per_s")),
                    "modelserve_p99_ms": ours.get("p99_ms"),
                    "mlserver_p99_ms": theirs.get("p99_ms"),
                    "p99_ratio": _ratio(ours.get("p99_ms"), theirs.get("p99_ms")),
                    "mlserver_na": (MLSERVER, protocol) in unsupported,
                }
            )
    return table


def targets(rows: Sequence[dict[str, Any]], loads: Sequence[LoadTime]) -> list[dict[str, Any]]:
    """Issue 6's targets: what was wanted, what was measured, and met (None: not measured)."""
    by = {(r["server"], r["protocol"], r["connections"]): r for r in rows}

    def value(server: str, protocol: str, key: str) -> float | None:
        row = by.get((server, protocol, EXTRA_CONNECTIONS))
        return None if row is None else float(row[key])

    rest = _ratio(value(MODELSERVE, "REST JSON", "req_per_s"), value(MLSERVER, "REST JSON", "req_per_s"))
    p99 = _ratio(value(MODELSERVE, "REST JSON", "p99_ms"), value(MLSERVER, "REST JSON", "p99_ms"))
    grpc_ratio = _ratio(value(MODELSERVE, "gRPC", "req_per_s"), value(MLSERVER, "gRPC", "req_per_s"))
    share = _ratio(value(MODELSERVE, ONNX, "req_per_s"), value(MODELSERVE, LIVE, "req_per_s"))
    hundred = [t for t in loads if t.models == 100]
    ready = statistics.median(t.ready_s for t in hundred) if hundred else None
    rss = statistics.median(t.rss_mib for t in hundred) if hundred else None
    c = EXTRA_CONNECTIONS
    found: list[tuple[str, str, float | None, str, Callable[[float], bool]]] = [
        (f"scikit-learn REST JSON req/s at {c} conns, modelserve ÷ MLServer", "≥ 5×", rest, ".2f", lambda v: v >= 5),
        (f"scikit-learn REST JSON p99 at {c} conns, modelserve ÷ MLServer", "≤ 0.2×", p99, ".3f", lambda v: v <= 0.2),
        (f"scikit-learn gRPC req/s at {c} conns, modelserve ÷ MLServer", "≥ 4×", grpc_ratio, ".2f", lambda v: v >= 4),
        (f"ONNX twin REST JSON req/s at {c} conns, % of health/live", "≥ 60 %",
         None if share is None else 100 * share, ".0f", lambda v: v >= 60),
        ("100 ONNX models: seconds from start to ready", "< 10 s", ready, ".2f", lambda v: v < 10),
        ("100 ONNX models: RSS in MiB (1 GB = 954 MiB)", "< 1 GB", rss, ".0f", lambda v: v * 2**20 < 1e9),
    ]  # fmt: skip
    return [
        {
            "target": what,
            "wanted": wanted,
            "measured": got,
            "shown": _fmt(got, spec),
            "met": None if got is None else ok(got),
        }
        for what, wanted, got, spec, ok in found
    ]


def print_tables(result: dict[str, Any]) -> None:
    print("\n**modelserve ÷ MLServer** (scikit-learn LogisticRegression, one row of 4 FP64 a request)\n")
    print("| protocol | conns | modelserve req/s | MLServer req/s | req/s ratio ", end="")
    print("| modelserve p99 ms | MLServer p99 ms | p99 ratio |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in result["comparison"]:
        na = "n/a" if r["mlserver_na"] else None
        print(
            f"| {r['protocol']} | {r['connections']} | {_fmt(r['modelserve_req_per_s'])} "
            f"| {na or _fmt(r['mlserver_req_per_s'])} | {na or _fmt(r['req_per_s_ratio'], '.2f')} "
            f"| {_fmt(r['modelserve_p99_ms'], '.2f')} | {na or _fmt(r['mlserver_p99_ms'], '.2f')} "
            f"| {na or _fmt(r['p99_ratio'], '.3f')} |"
        )
    print("\n**Every cell** (medians over rounds; CPU in % of one core; `!`: load generator above ~80 %)\n")
    print("| server | protocol | conns | req/s | p50 ms | p99 ms | errors | server CPU % | loadgen CPU % |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in result["rows"]:
        flag = " !" if r["loadgen_cpu_pct"] > LOADGEN_CPU_LIMIT else ""
        print(
            f"| {r['server']} | {r['protocol']} | {r['connections']} | {r['req_per_s']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['errors']} | {r['server_cpu_pct']:.0f} | {r['loadgen_cpu_pct']:.0f}{flag} |"
        )
    print("\n**In-process limit** (one thread, the server's core)\n")
    print("| call | batch | µs per call | calls/s | rows/s |")
    print("|---|--:|--:|--:|--:|")
    for r in result["in_process"]:
        per_s = 1e6 / r["us_per_call"]
        print(f"| {r['call']} | {r['batch']} | {r['us_per_call']:.1f} | {per_s:.0f} | {per_s * r['batch']:.0f} |")
    print("\n**Model count: start to /v2/health/ready, and RSS** (modelserve, copies of the ONNX twin)\n")
    print("| models | ready s | RSS MiB |")
    print("|--:|--:|--:|")
    for count in MODEL_COUNTS:
        runs = [t for t in result["load_times"] if t["models"] == count]
        if runs:
            ready, rss = (statistics.median(t[k] for t in runs) for k in ("ready_s", "rss_mib"))
            print(f"| {count} | {ready:.2f} | {rss:.0f} |")
    print("\n**Targets**\n")
    print("| target | wanted | measured | |")
    print("|---|---|--:|---|")
    for t in result["targets"]:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        print(f"| {t['target']} | {t['wanted']} | {t['shown']} | {verdict} |")
    print("\n" + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".")


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_grid_arguments(parser)
    parser.set_defaults(duration=8, warmup=2, rounds=2, connections="1,8,32,128")
    parser.add_argument(
        "--mlserver-venv",
        type=Path,
        default=DEFAULT_VENV,
        help=f"MLServer's virtual environment (default {DEFAULT_VENV})",
    )
    args = parser.parse_args(argv)
    check_grid_arguments(parser, args)
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian package {package})")
    return args


def versions(mlserver: str | None) -> dict[str, str]:
    found = {name: importlib.metadata.version(name) for name in ("modelserve", "scikit-learn", "onnxruntime")}
    return found | {"MLServer": mlserver or "not installed", "Python": platform.python_version()}


def run_rounds(args: argparse.Namespace, models: Models, scratch: Path, mlserver: Path | None) -> dict[str, Any]:
    """Every round: modelserve's cells, MLServer's cells, then the model-count load times."""
    bodies, cells, load_times, unsupported = make_bodies(), [], [], set()
    loads = write_loads(bodies, scratch)
    many = {count: many_models(models.onnx, count, scratch) for count in MODEL_COUNTS}
    problem = None
    for round_ in range(1, args.rounds + 1):
        with running_server(models.modelserve_repo, args.pinning) as server:
            chosen = verify(MODELSERVE, server, loads, bodies)
            cells += segment(MODELSERVE, server, chosen, [loads[LIVE], loads[ONNX]], round_, args)
        if mlserver is not None:
            try:
                with running_mlserver(mlserver, models.mlserver_dir, args.pinning) as server:
                    chosen = verify(MLSERVER, server, loads, bodies)
                    unsupported |= {(MLSERVER, p) for p in PROTOCOLS if p not in {load.protocol for load in chosen}}
                    cells += segment(MLSERVER, server, chosen, [], round_, args)
            except RuntimeError as exc:
                print(f"MLServer cannot be measured: {exc}", file=sys.stderr)
                mlserver, problem = None, str(exc)
        load_times += [load_time(many[count], count, round_, args.pinning) for count in MODEL_COUNTS]
    return {"cells": cells, "load_times": load_times, "unsupported": unsupported, "mlserver_problem": problem}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.pinning = Pinning.detect()
    started = time.monotonic()
    sklearn_version = importlib.metadata.version("scikit-learn")
    mlserver, found = mlserver_install(args.mlserver_venv, sklearn_version)
    if mlserver is None:
        print(f"MLServer cannot be measured, only modelserve's rows follow: {found}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="peers-") as scratch_name:
        scratch = Path(scratch_name)
        models = build_models(scratch)
        result: dict[str, Any] = {"in_process": in_process(models, args.pinning)}
        result |= run_rounds(args, models, scratch, mlserver)
    values = ("req_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "loadgen_cpu_pct")
    rows = median_rows(result["cells"], ("server", "protocol", "connections"), values)
    result |= {"rows": rows, "comparison": comparison(rows, result["unsupported"])}
    result |= {"targets": targets(rows, result["load_times"]), "versions": versions(found if mlserver else None)}
    result["load_times"] = [asdict(t) for t in result["load_times"]]
    print_tables(result)
    elapsed = time.monotonic() - started
    print(f"\nThe run took {elapsed / 60:.1f} min.")
    why = result["mlserver_problem"] or (None if mlserver else found)
    if why:
        print(f"MLServer was not measured: {why}", file=sys.stderr)
    if args.json is not None:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        config |= {"pinning": asdict(args.pinning), "cpus": len(os.sched_getaffinity(0))}
        result |= {"config": config, "cells": [asdict(c) for c in result["cells"]], "elapsed_s": elapsed}
        result["unsupported"] = sorted(result["unsupported"])
        args.json.write_text(json.dumps(result, indent=2, default=str))
    # MLServer's errors (wrk timeouts when overloaded) are a result; modelserve's are a failure
    ours_failed = any(r["errors"] for r in rows if r["server"] == MODELSERVE)
    return 1 if mlserver is None or result["mlserver_problem"] is not None or ours_failed else 0


if __name__ == "__main__":
    sys.exit(main())
