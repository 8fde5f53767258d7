"""The throughput cost of drift and outlier monitoring: the same server and load with it on and off.

What it measures: requests per second and p50/p99 latency of REST JSON requests (one iris row, an
ONNX logistic regression: the cheapest model, where a per-request cost shows most) at
``--connections`` (default 1: the latency one request sees; and 32: the server saturated), one
server at a time, in alternating order each round:

- ``off``: config.yaml ``monitoring: off`` (the version's profile is ignored);
- ``on``: the version has a reference profile (built by ``modelserve monitor profile`` from the
  iris data), default settings: every request feeds the drift detector, checks at most every 5 s;
- ``on+score``: as ``on``, and every request asks for its outlier score (``outlier_score: true``),
  computed on the request path.

The table shows medians, the on/off ratios of p50 latency (the target: monitoring adds under 5 %
to served latency, a ratio of at most 1.05) and of requests per second, and how many rows the
monitor took in (every request, or it measured nothing).

    python benchmarks/monitoring.py [--duration 8] [--warmup 2] [--connections 32] [--rounds 3]

Caveats: the machine is shared and noisy; trust the ratio of the same run, over several rounds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
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
    modelserve_command,
    running_server,
    write_json,
    wrk_cell,
)

ROW = [5.1, 3.5, 1.4, 0.2]
BODIES = {
    "off": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW}]},
    "on": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW}]},
    "on+score": {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW}],
        "parameters": {"outlier_score": True},
    },
}


def build(repo: Path) -> None:
    """The iris model, its training data as Parquet, and its reference profile."""
    import pandas as pd
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
    data = repo.parent / "iris.parquet"
    pd.DataFrame(iris.data, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"]).to_parquet(data)
    command = [modelserve_command(), "monitor", "profile", "-r", str(repo), "--model", "iris", "--data", str(data)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


@dataclass(frozen=True, slots=True)
class Cell:
    monitoring: str
    connections: int
    round: int
    req_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_pct: float
    wrk_cpu_pct: float
    monitored_rows: int


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_grid_arguments(parser)
    parser.set_defaults(connections="1,32", rounds=3, duration=8)
    args = parser.parse_args(argv)
    check_grid_arguments(parser, args)
    pinning = Pinning.detect()
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="modelserve-monitoring-") as scratch:
        repo = Path(scratch) / "models"
        build(repo)
        scripts = {}
        for mode, body in BODIES.items():
            scripts[mode] = Path(scratch) / f"{mode}.lua"
            scripts[mode].write_text(
                f'wrk.method = "POST"\nwrk.body = [==[{json.dumps(body)}]==]\n'
                f'wrk.headers["Content-Type"] = "application/json"\n{WRK_DONE_LUA}'
            )
        for round_ in range(args.rounds):
            modes = list(BODIES) if round_ % 2 == 0 else list(reversed(BODIES))
            for mode in modes:
                (repo / "iris" / "config.yaml").write_text("monitoring: off\n" if mode == "off" else "")
                with running_server(repo, pinning, ["--watch-interval", "0"]) as server:
                    url = f"{server.http_url}/v2/models/iris/infer"
                    httpx.post(url, json=BODIES[mode]).raise_for_status()
                    for connections in args.connections:
                        measured = wrk_cell(
                            server.pid, pinning, url, scripts[mode], connections, args.warmup, args.duration
                        )
                        status = httpx.get(f"{server.http_url}/v2/models/iris/monitoring").json()
                        rows = sum(v["rows"] for v in status["versions"])
                        cells.append(Cell(mode, connections, round_, *measured, rows))
                        print(f"  {cells[-1]}", file=sys.stderr)
    rows = median_rows(
        cells,
        ["connections", "monitoring"],
        ["req_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "wrk_cpu_pct", "monitored_rows"],
    )
    by_key = {(r["connections"], r["monitoring"]): r for r in rows}
    print(
        "| monitoring | conns | req/s | p50 ms | p99 ms | server CPU % | wrk CPU % | rows monitored "
        "| on/off p50 | on/off req/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        off = by_key.get((r["connections"], "off"))
        compared = off is not None and r["monitoring"] != "off"
        latency = f"{r['p50_ms'] / off['p50_ms']:.3f}" if compared and off else ""
        ratio = f"{r['req_per_s'] / off['req_per_s']:.3f}" if compared and off else ""
        flag = "!" if r["wrk_cpu_pct"] > LOADGEN_CPU_LIMIT else ""
        print(
            f"| {r['monitoring']} | {r['connections']} | {r['req_per_s']:.0f} | {r['p50_ms']:.3f} | "
            f"{r['p99_ms']:.3f} | {r['server_cpu_pct']:.0f} | {r['wrk_cpu_pct']:.0f}{flag} | "
            f"{r['monitored_rows']:.0f} | {latency} | {ratio} |"
        )
    if args.json:
        write_json(args.json, vars(args) | {"json": str(args.json)}, rows, cells)
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
