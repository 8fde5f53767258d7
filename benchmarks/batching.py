"""Batching gain: the same model served with adaptive batching on (the default) and off, side by side.

What it measures: requests per second and p50/p99 latency of REST JSON batch-1 requests at
``--connections`` (default 32) concurrent wrk connections, for two models, each served twice by
one modelserve process (one copy with ``batching: off``):

- ``skl-logreg``: scikit-learn logistic regression on 4 features (``.skops``), the model the
  MLServer comparison uses; scikit-learn costs ~180 µs a call whatever the batch size;
- ``onnx-mlp32``: a 32-feature MLP (two hidden layers of 2048, ~4 M multiply-adds a row) exported to
  ONNX, where one call of a batch costs far less than a call per row.

Rounds interleave on/off per model, and the table shows medians and the on/off ratio measured in
the same run. The server is pinned to one core and wrk to the other (see ``_common.py``).

    python benchmarks/batching.py [--duration 10] [--warmup 2] [--connections 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
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

MODELS = {"skl-logreg": 4, "onnx-mlp32": 32}  # name -> features


def build(repo: Path) -> None:
    """Both models, each as ``<name>`` (batching on) and ``<name>-off`` (batching: off)."""
    import skops.io as sio
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # the weights need not be good, only big
    rng = np.random.default_rng(0)
    x4 = rng.normal(size=(300, 4))
    logreg = LogisticRegression(max_iter=500).fit(x4, (x4.sum(axis=1) > 0).astype(int) + (x4[:, 0] > 1))
    x32 = rng.normal(size=(600, 32)).astype(np.float32)
    mlp = MLPClassifier(hidden_layer_sizes=(2048, 2048), max_iter=3, random_state=0).fit(x32, (x32[:, :3].sum(1) > 0))
    for suffix, config in (("", None), ("-off", "batching: off\n")):
        (repo / f"skl-logreg{suffix}" / "1").mkdir(parents=True)
        sio.dump(logreg, repo / f"skl-logreg{suffix}" / "1" / "model.skops")
        (repo / f"onnx-mlp32{suffix}" / "1").mkdir(parents=True)
        onnx_model = to_onnx(
            mlp, initial_types=[("input", FloatTensorType([None, 32]))], options={id(mlp): {"zipmap": False}}
        )
        (repo / f"onnx-mlp32{suffix}" / "1" / "model.onnx").write_bytes(onnx_model.SerializeToString())
        for name in MODELS:
            if config:
                (repo / f"{name}{suffix}" / "config.yaml").write_text(config)


def body(features: int, datatype: str) -> str:
    row = [round(float(v), 3) for v in np.random.default_rng(1).normal(size=features)]
    return json.dumps({"inputs": [{"name": "input", "datatype": datatype, "shape": [1, features], "data": row}]})


def write_lua(directory: Path, name: str, request: str) -> Path:
    path = directory / f"{name}.lua"
    path.write_text(
        f'wrk.method = "POST"\nwrk.body = [==[{request}]==]\n'
        f'wrk.headers["Content-Type"] = "application/json"\n{WRK_DONE_LUA}'
    )
    return path


@dataclass(frozen=True, slots=True)
class Cell:
    model: str
    batching: str
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
    parser.set_defaults(connections="32", rounds=3)
    args = parser.parse_args(argv)
    check_grid_arguments(parser, args)
    pinning = Pinning.detect()
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="modelserve-batching-") as scratch:
        repo = Path(scratch) / "models"
        build(repo)
        with running_server(repo, pinning) as server:
            lua = {}
            for name, features in MODELS.items():
                datatype = "FP64" if name.startswith("skl") else "FP32"
                request = body(features, datatype)
                for suffix in ("", "-off"):
                    url = f"{server.http_url}/v2/models/{name}{suffix}/infer"
                    check = httpx.post(url, content=request, headers={"content-type": "application/json"})
                    check.raise_for_status()
                    lua[name + suffix] = write_lua(Path(scratch), name + suffix, request)
            for round_ in range(args.rounds):
                for connections in args.connections:
                    for name in MODELS:
                        for suffix, mode in (("", "on"), ("-off", "off")):
                            url = f"{server.http_url}/v2/models/{name}{suffix}/infer"
                            cell = wrk_cell(
                                server.pid, pinning, url, lua[name + suffix], connections, args.warmup, args.duration
                            )
                            cells.append(Cell(name, mode, connections, round_, *cell))
                            print(f"  {cells[-1]}", file=sys.stderr)
    rows = median_rows(
        cells,
        ["model", "connections", "batching"],
        ["req_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "wrk_cpu_pct"],
    )
    print_table(rows)
    if args.json:
        write_json(args.json, vars(args) | {"json": str(args.json)}, rows, cells)
    return 1 if any(row["errors"] for row in rows) else 0


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    by_key = {(r["model"], r["connections"], r["batching"]): r for r in rows}
    print("| model | conns | batching | req/s | p50 ms | p99 ms | server CPU % | wrk CPU % | on/off req/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        off = by_key.get((r["model"], r["connections"], "off"))
        ratio = f"{r['req_per_s'] / off['req_per_s']:.2f}" if off and r["batching"] == "on" else ""
        flag = "!" if r["wrk_cpu_pct"] > LOADGEN_CPU_LIMIT else ""
        print(
            f"| {r['model']} | {r['connections']} | {r['batching']} | {r['req_per_s']:.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['server_cpu_pct']:.0f} | {r['wrk_cpu_pct']:.0f}{flag} | {ratio} |"
        )


if __name__ == "__main__":
    sys.exit(main())
