"""REST throughput and latency of modelserve for small models, driven by ``wrk``.

What it measures: requests per second, p50 and p99 latency, and non-2xx responses of one modelserve
process serving the example models (``examples/make_models.py``) at 1, 8 and 32 concurrent
HTTP/1.1 keep-alive connections, for these scenarios:

- ``health/live``: ``GET /v2/health/live``, the cheapest endpoint; the server's own ceiling and the
  baseline that every other row is divided by (the ``vs live`` column), at the same concurrency;
- ``v2 iris``: ``POST /v2/models/iris/infer`` (JSON, ONNX logistic regression, one row of 4 FP32);
- ``v1 iris``: ``POST /v1/models/iris:predict`` (TF Serving REST, same model and row);
- ``v2 iris-skops``: ``POST /v2/models/iris-skops/infer`` (the same estimator in scikit-learn).

The server's and wrk's CPU use during each measured cell are printed as a percentage of one core,
so a reader can tell which side was the bottleneck: a wrk near 100 % measured itself, not the
server (``../shared/bench/NOTES.md`` puts the limit at ~80 %; such cells are marked with ``!``).

Run it from the repository root (needs ``wrk``, Debian package ``wrk``, and the ``examples`` extra)::

    python benchmarks/rest_small.py [--duration 10] [--warmup 2] [--connections 1,8,32]
                                    [--rounds 1] [--json results.json] [--repo DIR]

It uses ``examples/models`` when that holds the example models, otherwise it builds them into a
temporary directory. It starts ``modelserve serve`` itself on port 0, reads the bound port from
its log, and stops it by PID when done. With 2 or more CPUs the server is pinned to one core and
wrk (one thread) to another with ``taskset``. The exit status is 1 if any cell had errors.

Caveats:

- The machine is shared and noisy: trust the ratios against ``health/live`` measured in the same
  run more than absolute figures, and use ``--rounds 3`` (medians; scenarios interleaved within a
  round) for numbers worth quoting. ``--duration 3`` is a smoke test, not a measurement.
- ``errors`` counts what wrk counts: responses with status >= 400 (``summary.errors.status``) plus
  socket errors (connect, read, write, timeout). Counting every non-2xx in a Lua ``response()``
  would make wrk parse each response in Lua and cost load-generator CPU; instead one request per
  scenario is checked for a 2xx status (and label 0 for the iris rows) before measuring.
- wrk's CPU is the rusage of the reaped wrk process; the server's is the ``utime + stime`` delta of
  ``/proc/PID/stat`` (all threads) over the same wall-clock window, which includes wrk's start-up.
- Latency percentiles are wrk's, which suffer from coordinated omission (wrk is closed-loop).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODELS = ("iris", "iris-skops")
BASELINE = "health/live"
WRK_CPU_LIMIT = 80.0  # % of one core above which the load generator is measuring itself (NOTES.md)
PORT_LINE = re.compile(r"HTTP server listening on (http://\S+?:(\d+)) \(REST")
RESULT_LINE = re.compile(r"^WRK_RESULT (\{.*\})$", re.MULTILINE)

V2_BODY = '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'
V1_BODY = '{"instances":[[5.1,3.5,1.4,0.2]]}'

LUA_TEMPLATE = """\
wrk.method = "{method}"
{request}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
    .. '"status_errors":%d,"socket_errors":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    method: str
    path: str
    body: str | None = None
    label_of: str | None = None  # "v2" or "v1": how to find the predicted label in the response


SCENARIOS = (
    Scenario(BASELINE, "GET", "/v2/health/live"),
    Scenario("v2 iris", "POST", "/v2/models/iris/infer", V2_BODY, "v2"),
    Scenario("v1 iris", "POST", "/v1/models/iris:predict", V1_BODY, "v1"),
    Scenario("v2 iris-skops", "POST", "/v2/models/iris-skops/infer", V2_BODY, "v2"),
)


@dataclass(frozen=True, slots=True)
class Cell:
    """One wrk run: a scenario at one concurrency. CPU figures are % of one core over ``wall_s``."""

    scenario: str
    connections: int
    round: int
    requests: int
    req_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_pct: float
    wrk_cpu_pct: float
    wall_s: float


@dataclass(frozen=True, slots=True)
class Pinning:
    """``taskset`` prefixes for the server and wrk; empty when the machine has fewer than 2 CPUs."""

    server: tuple[str, ...]
    wrk: tuple[str, ...]

    @classmethod
    def detect(cls) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            print(f"note: {len(cpus)} CPU(s) or no taskset: server and wrk are not pinned", file=sys.stderr)
            return cls((), ())
        return cls(("taskset", "-c", str(cpus[0])), ("taskset", "-c", str(cpus[1])))


# --- models and server --------------------------------------------------------------------------


def model_repository(requested: Path | None, scratch: Path) -> Path:
    """``requested``, else examples/models if it holds the example models, else a fresh build in ``scratch``."""
    if requested is not None:
        return requested
    default = EXAMPLES / "models"
    if all((default / name / "1").is_dir() for name in MODELS):
        return default
    spec = importlib.util.spec_from_file_location("make_models", EXAMPLES / "make_models.py")
    assert spec is not None and spec.loader is not None, "examples/make_models.py is missing"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"building the example models into {scratch / 'models'}", file=sys.stderr)
    built: Path = module.build(scratch / "models")
    return built


def _modelserve_command() -> str:
    beside_python = Path(sys.executable).parent / "modelserve"
    found = str(beside_python) if beside_python.exists() else shutil.which("modelserve")
    if found is None:
        sys.exit("cannot find the modelserve command; install the project with pip install -e .")
    return found


class ServerLog:
    """Drains the server's stderr in a thread (so the pipe never fills) and finds the bound URL."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.tail: deque[str] = deque(maxlen=50)
        self._url: str | None = None
        self._found = threading.Event()
        assert proc.stderr is not None
        self._thread = threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.tail.append(line.rstrip())
            match = PORT_LINE.search(line)
            if match and self._url is None:
                self._url = match.group(1)
                self._found.set()
        self._found.set()  # the server exited: stop waiting

    def url(self, timeout_s: float) -> str | None:
        self._found.wait(timeout_s)
        return self._url


@contextmanager
def running_server(repo: Path, pinning: Pinning) -> Iterator[tuple[int, str]]:
    """Start ``modelserve serve`` on port 0; yield (pid, base URL) once ready; SIGTERM it on exit."""
    command = [*pinning.server, _modelserve_command(), "serve", str(repo), "--http-port", "0", "--log-level", "info"]
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    log = ServerLog(proc)
    try:
        url = log.url(timeout_s=60)
        if url is None:
            raise RuntimeError("the server did not log its port; its log ends with:\n" + "\n".join(log.tail))
        _wait_ready(url, proc, log)
        yield proc.pid, url  # taskset execs the server, so this PID is the server's own
    finally:
        _stop(proc)


def _wait_ready(url: str, proc: subprocess.Popen[str], log: ServerLog, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}:\n" + "\n".join(log.tail))
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the server at {url} was not ready after {timeout_s} s")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print(f"server {proc.pid} ignored SIGTERM for 30 s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def verify(url: str) -> None:
    """Send each scenario's request once: each must answer 2xx, and each iris row must predict 0."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for s in SCENARIOS:
            headers = {"Content-Type": "application/json"} if s.body is not None else {}
            r = client.request(s.method, s.path, content=s.body, headers=headers)
            if not r.is_success:
                raise RuntimeError(f"{s.name}: {s.method} {s.path} answered {r.status_code}: {r.text}")
            if s.label_of is not None and _label(s.label_of, r.json()) != 0:
                raise RuntimeError(f"{s.name}: expected label 0 for {s.body}, got {r.text}")


def _label(kind: str, doc: dict[str, Any]) -> Any:
    if kind == "v1":
        return doc["predictions"][0]["label"]
    outputs = {o["name"]: o for o in doc["outputs"]}
    return outputs["label"]["data"][0]


# --- wrk ----------------------------------------------------------------------------------------


def write_lua(scenario: Scenario, directory: Path) -> Path:
    """The wrk script for ``scenario``: its request, and a ``done()`` printing one WRK_RESULT line."""
    request = ""
    if scenario.body is not None:
        assert "]==]" not in scenario.body, "the body would end the Lua long string"
        request = f'wrk.body = [==[{scenario.body}]==]\nwrk.headers["Content-Type"] = "application/json"'
    path = directory / f"{re.sub(r'[^a-z0-9]+', '_', scenario.name)}.lua"
    path.write_text(LUA_TEMPLATE.format(method=scenario.method, request=request))
    return path


def _cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(pinning: Pinning, url: str, lua: Path, connections: int, seconds: int) -> str:
    command = [*pinning.wrk, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Target:
    """Everything a cell needs to know about the server under test and how to drive it."""

    pid: int
    url: str
    pinning: Pinning
    lua: dict[str, Path]
    duration_s: int
    warmup_s: int


def measure(target: Target, scenario: Scenario, connections: int, round_: int) -> Cell:
    """Warm up, then run wrk for ``target.duration_s`` while tracking the server's and wrk's CPU."""
    lua, url = target.lua[scenario.name], target.url + scenario.path
    run_wrk(target.pinning, url, lua, connections, target.warmup_s)
    server_before, wrk_before, start = _cpu_seconds(target.pid), _children_cpu_seconds(), time.monotonic()
    out = run_wrk(target.pinning, url, lua, connections, target.duration_s)
    wall = time.monotonic() - start
    server_cpu, wrk_cpu = _cpu_seconds(target.pid) - server_before, _children_cpu_seconds() - wrk_before
    match = RESULT_LINE.search(out)
    if match is None:
        raise RuntimeError(f"no WRK_RESULT line in wrk's output:\n{out}")
    r = json.loads(match.group(1))
    return Cell(
        scenario=scenario.name,
        connections=connections,
        round=round_,
        requests=r["requests"],
        req_per_s=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        errors=r["status_errors"] + r["socket_errors"],
        server_cpu_pct=100 * server_cpu / wall,
        wrk_cpu_pct=100 * wrk_cpu / wall,
        wall_s=wall,
    )


# --- results ------------------------------------------------------------------------------------


def summarize(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per (scenario, connections): medians over rounds, and req/s relative to the baseline."""
    groups: dict[tuple[str, int], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.scenario, cell.connections), []).append(cell)
    rows = []
    for (scenario, connections), group in groups.items():
        row: dict[str, Any] = {"scenario": scenario, "connections": connections, "rounds": len(group)}
        for key in ("req_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "wrk_cpu_pct"):
            row[key] = statistics.median(getattr(c, key) for c in group)
        row["errors"] = sum(c.errors for c in group)
        rows.append(row)
    baseline = {r["connections"]: r["req_per_s"] for r in rows if r["scenario"] == BASELINE}
    for row in rows:
        base = baseline.get(row["connections"])
        row["vs_live"] = row["req_per_s"] / base if base else None
    return rows


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    header = f"{'scenario':<15} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    print(f"{header} {'server CPU%':>11} {'wrk CPU%':>9} {'vs live':>7}")
    for r in rows:
        flag = "!" if r["wrk_cpu_pct"] > WRK_CPU_LIMIT else " "
        ratio = f"{r['vs_live']:.2f}" if r["vs_live"] is not None else "-"
        print(
            f"{r['scenario']:<15} {r['connections']:>5} {r['req_per_s']:>8.0f} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {r['errors']:>6} {r['server_cpu_pct']:>11.0f} {r['wrk_cpu_pct']:>8.0f}{flag} "
            f"{ratio:>7}"
        )
    if any(r["wrk_cpu_pct"] > WRK_CPU_LIMIT for r in rows):
        print(f"! wrk used more than {WRK_CPU_LIMIT:.0f}% of its core: that row may measure the load generator")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per cell (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each cell (default 2)")
    parser.add_argument("--connections", default="1,8,32", help="comma-separated concurrencies (default 1,8,32)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole grid; the table shows medians")
    parser.add_argument("--repo", type=Path, default=None, help="model repository (default: the example models)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    if args.duration < 1 or args.warmup < 1 or args.rounds < 1 or min(args.connections, default=0) < 1:
        parser.error("--duration, --warmup and --rounds must be >= 1, and --connections a list of ints >= 1")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian package wrk)")
    return args


def run_grid(target: Target, connections: Sequence[int], rounds: int) -> list[Cell]:
    """Every scenario at every concurrency, the scenarios interleaved so they share the noise."""
    cells = []
    for round_ in range(1, rounds + 1):
        for conns in connections:
            for scenario in SCENARIOS:
                cell = measure(target, scenario, conns, round_)
                print(f"  round {round_} {scenario.name:<15} c={conns:<3} {cell.req_per_s:8.0f} req/s", file=sys.stderr)
                cells.append(cell)
    return cells


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pinning = Pinning.detect()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rest_small-")))
        repo = model_repository(args.repo, scratch)
        pid, url = stack.enter_context(running_server(repo, pinning))
        verify(url)
        lua = {s.name: write_lua(s, scratch) for s in SCENARIOS}
        target = Target(pid, url, pinning, lua, args.duration, args.warmup)
        cells = run_grid(target, args.connections, args.rounds)
    rows = summarize(cells)
    print_table(rows)
    if args.json is not None:
        config = {k: v for k, v in vars(args).items() if k not in ("json", "repo")}
        config |= {"repo": str(repo), "pinning": asdict(pinning), "cpus": len(os.sched_getaffinity(0))}
        args.json.write_text(
            json.dumps({"config": config, "rows": rows, "cells": [asdict(c) for c in cells]}, indent=2)
        )
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
