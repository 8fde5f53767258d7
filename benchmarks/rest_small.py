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
temporary directory. It starts ``modelserve serve`` itself on port 0 (HTTP and gRPC), reads the
bound ports from its log, and stops it by PID when done. With 2 or more CPUs the server is pinned to
one core and wrk (one thread) to another with ``taskset``. The exit status is 1 if any cell had
errors. The server, CPU accounting and wrk plumbing live in ``_common.py``, shared with ``protocols.py``.

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

import httpx
from _common import (
    LOADGEN_CPU_LIMIT,
    WRK_DONE_LUA,
    Pinning,
    add_grid_arguments,
    check_grid_arguments,
    measured,
    median_rows,
    run_wrk,
    running_server,
    write_json,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODELS = ("iris", "iris-skops")
BASELINE = "health/live"

V2_BODY = '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'
V1_BODY = '{"instances":[[5.1,3.5,1.4,0.2]]}'


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


# --- models -------------------------------------------------------------------------------------


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
    path.write_text(f'wrk.method = "{scenario.method}"\n{request}\n{WRK_DONE_LUA}')
    return path


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
    r, usage = measured(target.pid, lambda: run_wrk(target.pinning, url, lua, connections, target.duration_s))
    return Cell(
        scenario=scenario.name,
        connections=connections,
        round=round_,
        requests=r["requests"],
        req_per_s=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        errors=r["status_errors"] + r["socket_errors"],
        server_cpu_pct=usage.server_cpu_pct,
        wrk_cpu_pct=usage.loadgen_cpu_pct,
        wall_s=usage.wall_s,
    )


# --- results ------------------------------------------------------------------------------------


def summarize(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per (scenario, connections): medians over rounds, and req/s relative to the baseline."""
    values = ("req_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "wrk_cpu_pct")
    rows = median_rows(cells, ("scenario", "connections"), values)
    baseline = {r["connections"]: r["req_per_s"] for r in rows if r["scenario"] == BASELINE}
    for row in rows:
        base = baseline.get(row["connections"])
        row["vs_live"] = row["req_per_s"] / base if base else None
    return rows


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    header = f"{'scenario':<15} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    print(f"{header} {'server CPU%':>11} {'wrk CPU%':>9} {'vs live':>7}")
    for r in rows:
        flag = "!" if r["wrk_cpu_pct"] > LOADGEN_CPU_LIMIT else " "
        ratio = f"{r['vs_live']:.2f}" if r["vs_live"] is not None else "-"
        print(
            f"{r['scenario']:<15} {r['connections']:>5} {r['req_per_s']:>8.0f} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {r['errors']:>6} {r['server_cpu_pct']:>11.0f} {r['wrk_cpu_pct']:>8.0f}{flag} "
            f"{ratio:>7}"
        )
    if any(r["wrk_cpu_pct"] > LOADGEN_CPU_LIMIT for r in rows):
        print(f"! wrk used more than {LOADGEN_CPU_LIMIT:.0f}% of its core: that row may measure the load generator")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_grid_arguments(parser)
    parser.add_argument("--repo", type=Path, default=None, help="model repository (default: the example models)")
    args = parser.parse_args(argv)
    check_grid_arguments(parser, args)
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
        server = stack.enter_context(running_server(repo, pinning))
        verify(server.http_url)
        lua = {s.name: write_lua(s, scratch) for s in SCENARIOS}
        target = Target(server.pid, server.http_url, pinning, lua, args.duration, args.warmup)
        cells = run_grid(target, args.connections, args.rounds)
    rows = summarize(cells)
    print_table(rows)
    if args.json is not None:
        config = {k: v for k, v in vars(args).items() if k not in ("json", "repo")}
        config |= {"repo": str(repo), "pinning": asdict(pinning), "cpus": len(os.sched_getaffinity(0))}
        write_json(args.json, config, rows, cells)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
