"""The throughput cost of observability: the same server and load with metrics on and off.

What it measures: requests per second and p50/p99 of REST JSON requests (one iris row, the ONNX
example model: the cheapest model, where a per-request cost shows most) at ``--connections``
(default 32), with ``modelserve serve --metrics on``, ``--metrics off`` and metrics plus
``--tracing on`` (spans made, not exported: ``OTEL_TRACES_EXPORTER=none``), one server at a time,
in alternating order each round. The table shows medians and the on/off ratio; the target is a cost
under 5 %, i.e. a ratio of at least 0.95.

    python benchmarks/observability.py [--duration 8] [--warmup 2] [--connections 32] [--rounds 3]

Caveats: the machine is shared and noisy; trust the ratio of the same run, over several rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import (
    LOADGEN_CPU_LIMIT,
    WRK_DONE_LUA,
    Pinning,
    add_grid_arguments,
    check_grid_arguments,
    median_rows,
    running_server,
    write_json,
    wrk_cell,
)

# what each row turns on; spans are made but not exported (OTEL_TRACES_EXPORTER=none): the server's own cost
MODES = {
    "on": ["--metrics", "on"],
    "off": ["--metrics", "off"],
    "on+tracing": ["--metrics", "on", "--tracing", "on"],
    "on+tracing 1%": ["--metrics", "on", "--tracing", "on"],
}
# tracing with 1 % of new traces sampled (OTEL_TRACES_SAMPLER=parentbased_traceidratio, 0.01)
SAMPLED_ENV = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
BODY = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]})


def build(repo: Path) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    onnx_model = to_onnx(
        model, initial_types=[("input", FloatTensorType([None, 4]))], options={id(model): {"zipmap": False}}
    )
    (repo / "iris" / "1").mkdir(parents=True)
    (repo / "iris" / "1" / "model.onnx").write_bytes(onnx_model.SerializeToString())


@dataclass(frozen=True, slots=True)
class Cell:
    metrics: str
    connections: int
    round: int
    req_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_pct: float
    wrk_cpu_pct: float


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_grid_arguments(parser)
    parser.set_defaults(connections="32", rounds=3, duration=8)
    args = parser.parse_args(argv)
    check_grid_arguments(parser, args)
    pinning = Pinning.detect()
    os.environ["OTEL_TRACES_EXPORTER"] = "none"  # inherited by the servers
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="modelserve-observability-") as scratch:
        repo = Path(scratch) / "models"
        build(repo)
        script = Path(scratch) / "iris.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = [==[{BODY}]==]\n'
            f'wrk.headers["Content-Type"] = "application/json"\n{WRK_DONE_LUA}'
        )
        for round_ in range(args.rounds):
            modes = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
            for mode in modes:
                for key, value in SAMPLED_ENV.items():  # the servers inherit the environment
                    if mode == "on+tracing 1%":
                        os.environ[key] = value
                    else:
                        os.environ.pop(key, None)
                with running_server(repo, pinning, [*MODES[mode], "--watch-interval", "0"]) as server:
                    url = f"{server.http_url}/v2/models/iris/infer"
                    httpx.post(url, content=BODY, headers={"content-type": "application/json"}).raise_for_status()
                    for connections in args.connections:
                        cells.append(
                            Cell(
                                mode,
                                connections,
                                round_,
                                *wrk_cell(server.pid, pinning, url, script, connections, args.warmup, args.duration),
                            )
                        )
                        print(f"  {cells[-1]}", file=sys.stderr)
    rows = median_rows(
        cells, ["connections", "metrics"], ["req_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "wrk_cpu_pct"]
    )
    by_key = {(r["connections"], r["metrics"]): r for r in rows}
    print("| metrics | conns | req/s | p50 ms | p99 ms | server CPU % | wrk CPU % | on/off req/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        off = by_key.get((r["connections"], "off"))
        ratio = f"{r['req_per_s'] / off['req_per_s']:.3f}" if off and r["metrics"] != "off" else ""
        flag = "!" if r["wrk_cpu_pct"] > LOADGEN_CPU_LIMIT else ""
        print(
            f"| {r['metrics']} | {r['connections']} | {r['req_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['server_cpu_pct']:.0f} | {r['wrk_cpu_pct']:.0f}{flag} | {ratio} |"
        )
    if args.json:
        write_json(args.json, vars(args) | {"json": str(args.json)}, rows, cells)
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
