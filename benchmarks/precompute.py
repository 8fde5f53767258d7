"""Precomputed lookup latency vs live inference of the same model, at one connection.

A scikit-learn LogisticRegression (4 features) is served live (``scorer``) and precomputed over
10,000 keys into SQLite (``scored``, ``modelserve precompute``). One client, one row per request,
sequential: live v2 infer with the features, v2 infer by key, and ``GET /v1/precomputed/{m}/{key}``.
The server runs in this process (``modelserve.testing.run``), so client and server share the GIL:
compare the rows with each other, not with the wrk numbers of the other benchmarks.

    python benchmarks/precompute.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import skops.io as sio
import yaml
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from modelserve import testing
from modelserve.cli.main import main

KEYS = 10_000


def build(root: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 4))
    (root / "scorer" / "1").mkdir(parents=True)
    sio.dump(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), root / "scorer" / "1" / "model.skops")
    rows = pd.DataFrame(rng.standard_normal((KEYS, 4)), columns=["a", "b", "c", "d"])
    rows.insert(0, "id", np.arange(KEYS))
    rows.to_parquet(root / "rows.parquet")
    db = f"sqlite:///{root / 'predictions.db'}"
    args = ["precompute", "-r", str(root), "-m", "scorer", "--input", str(root / "rows.parquet")]
    result = CliRunner().invoke(main, [*args, "--key-column", "id", "--db", db, "--table", "scores"])
    assert result.exit_code == 0, result.output
    print(result.output.strip())
    (root / "scored" / "1").mkdir(parents=True)
    (root / "scored" / "1" / "precomputed.yaml").write_text(yaml.safe_dump({"db": db, "table": "scores"}))
    return rows


def measure(client: httpx.Client, requests: list[tuple[str, str, object]]) -> tuple[float, float]:
    took = []
    for method, path, body in requests:
        started = time.perf_counter()
        r = client.request(method, path, json=body)
        took.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
    ms = np.array(took[len(took) // 10 :]) * 1000  # the first tenth warms up
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main_() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    n = parser.parse_args().requests
    with tempfile.TemporaryDirectory() as tmp:
        rows = build(Path(tmp))
        rng = np.random.default_rng(1)
        picked = rng.integers(0, KEYS, n)
        x = rows[["a", "b", "c", "d"]].to_numpy()
        cases = {
            "live v2 infer (features)": [
                (
                    "POST",
                    "/v2/models/scorer/infer",
                    {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": x[k].tolist()}]},
                )
                for k in picked
            ],
            "precomputed v2 infer (key)": [
                (
                    "POST",
                    "/v2/models/scored/infer",
                    {"inputs": [{"name": "key", "datatype": "INT64", "shape": [1], "data": [int(k)]}]},
                )
                for k in picked
            ],
            "GET /v1/precomputed/{m}/{key}": [("GET", f"/v1/precomputed/scored/{k}", None) for k in picked],
        }
        with testing.run(Path(tmp)) as srv, httpx.Client(base_url=srv.http_url) as client:
            print("\n| path | requests | p50 ms | p99 ms |\n|---|---|---|---|")
            for name, requests in cases.items():
                p50, p99 = measure(client, requests)
                print(f"| {name} | {n} | {p50:.3f} | {p99:.3f} |")


if __name__ == "__main__":
    main_()
