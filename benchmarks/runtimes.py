"""Every runtime: load time, and single-row latency in-process vs served.

For each example model of every format (the cases of the runtime conformance suite,
``tests/fixtures/runtime_cases``; formats whose library is missing are left out):

- ``load ms``: ``Runtime.load`` in this process (median of ``--loads``; TensorFlow and PyTorch pay
  their one-time import in the first load only, which is not counted: a warm-up load runs first);
- ``in-process µs``: one row through the runtime's ``predict`` called directly: the library's own
  call plus modelserve's conversion of its outputs, with nothing of the server in between;
- ``served µs``: one row over v2 REST JSON to ``modelserve serve`` in its own process (pinned to
  one core, this client on another), sequential requests on one keep-alive connection (``http.client``);
- ``overhead``: served minus in-process, the whole cost of the server, the protocol and the
  loopback network for that model.

Run from the repository root::

    python benchmarks/runtimes.py [--requests 1000] [--loads 3]

Caveats: the machine is shared and noisy; compare rows measured in the same run. Served latency
is a closed loop of one client: it is the latency floor, not throughput (see ``protocols.py``).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from _common import Pinning, running_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelserve.config.model import load_model_config  # noqa: E402
from modelserve.runtimes.registry import resolve  # noqa: E402
from modelserve.types import datatype_of  # noqa: E402
from tests.fixtures.models import build_examples  # noqa: E402
from tests.fixtures.runtime_cases import RuntimeCase, all_cases  # noqa: E402


def _median_us(fn: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def in_process(repo: Path, case: RuntimeCase, loads: int, calls: int) -> tuple[float, float]:
    model_dir = repo / case.model
    version_dir = max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    config = load_model_config(model_dir / "config.yaml")
    resolved = resolve(version_dir, config)
    load_times = []
    for _ in range(loads + 1):  # the first load pays the library's import and is not counted
        runtime = resolved.runtime()
        started = time.perf_counter()
        runtime.load(resolved.artifact, config)
        load_times.append(time.perf_counter() - started)
        if len(load_times) <= loads:
            runtime.unload()
    inputs = case.inputs(1)
    runtime.predict(inputs)
    predict_us = _median_us(lambda: runtime.predict(inputs), calls)
    runtime.unload()
    return statistics.median(load_times[1:]) * 1e3, predict_us


def served(target: str, case: RuntimeCase, requests: int) -> float:
    """Median µs of a v2 REST JSON request; http.client costs the client far less than httpx."""
    inputs = case.inputs(1)
    body = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": datatype_of(array),
                    "shape": list(array.shape),
                    "data": [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()],
                }
                for name, array in inputs.items()
            ]
        }
    )
    url = f"/v2/models/{case.model}/infer"
    host, port = target.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port))

    def post() -> None:
        connection.request("POST", url, body, {"content-type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{case.model}: {response.status} {payload[:200]!r}")

    for _ in range(20):
        post()
    try:
        return _median_us(post, requests)
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=1000, help="single-row calls per model, each way")
    parser.add_argument("--loads", type=int, default=3, help="timed loads per model")
    args = parser.parse_args()
    pinning = Pinning.detect()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        build_examples(repo)
        cases = [c for c in all_cases() if (repo / c.model).is_dir()]
        for case in cases:
            load_ms, native_us = in_process(repo, case, args.loads, args.requests)
            rows.append([case.model, case.platform, load_ms, native_us])
            print(f"  {case.model}: load {load_ms:.1f} ms, in-process {native_us:.0f} µs", file=sys.stderr)
        with running_server(repo, pinning, ["--trust-code"]) as server:
            for row, case in zip(rows, cases, strict=True):
                row.append(served(server.http_url, case, args.requests))
    print("| model | platform | load ms | in-process µs | served µs | overhead µs |")
    print("|---|---|--:|--:|--:|--:|")
    for model, platform, load_ms, native_us, served_us in rows:
        overhead = served_us - native_us
        print(f"| {model} | {platform} | {load_ms:.1f} | {native_us:.0f} | {served_us:.0f} | {overhead:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
