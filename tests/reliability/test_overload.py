"""Overload: far more requests than a model can serve. Admitted requests keep a bounded latency,
the rest are refused at once with 429 and Retry-After, every request gets exactly one answer,
memory stays flat, and the server serves normally afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from tests.fixtures.serve_process import Served
from tests.fixtures.slow_model import request, write_slow_model

DELAY_S = 0.05  # one request's compute: capacity 20 requests/s with one instance
MAX_QUEUE = 4
CLIENTS = 40  # concurrent clients, each sending again 20 ms after a refusal
RUN_S = 3.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The server in a process of its own, as users run it: the load generator must not share its GIL."""
    repo = tmp_path_factory.mktemp("overload")
    config = {"batching": False, "instances": 1, "limits": {"max_queue": MAX_QUEUE, "timeout_s": 10}}
    write_slow_model(repo, "slow", delay_s=DELAY_S, config=config)
    # the baseline, measured in the same run: the same model with a queue as good as unbounded
    unbounded = {**config, "limits": {"max_queue": 100_000, "timeout_s": 60}}
    write_slow_model(repo, "unbounded", delay_s=DELAY_S, config=unbounded)
    with Served(repo, "--trust-code", env={"MODELSERVE_INFERENCE_THREADS": "1"}) as server:
        yield server


async def _load(url: str, seconds: float, model: str = "slow") -> list[tuple[int, float, str, float]]:
    """(status, latency s, Retry-After, y) for every request sent by CLIENTS clients for ``seconds``."""
    outcomes: list[tuple[int, float, str, float]] = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one_client(i: int) -> None:
            value = float(i + 100)  # 13 would make the model raise
            while time.monotonic() < stop:
                started = time.perf_counter()
                reply = await client.post(f"/v2/models/{model}/infer", json=request(value))
                latency = time.perf_counter() - started
                y = reply.json()["outputs"][0]["data"][0] if reply.status_code == 200 else float("nan")
                outcomes.append((reply.status_code, latency, reply.headers.get("retry-after", ""), y))
                if reply.status_code == 200:
                    assert y == 2 * value  # each client's own answer, never another's
                else:
                    await asyncio.sleep(0.02)

        await asyncio.gather(*(one_client(i) for i in range(CLIENTS)))
    return outcomes


def _rss_mib(pid: int) -> float:
    """The resident memory of process ``pid`` now (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_overload_is_refused_quickly_and_admitted_latency_stays_bounded(srv: Served) -> None:
    first = asyncio.run(_load(srv.http_url, RUN_S))
    after_first = _rss_mib(srv.process.pid)
    second = asyncio.run(_load(srv.http_url, RUN_S))
    statuses = {status for status, *_ in first + second}
    assert statuses <= {200, 429}, statuses  # exactly one answer each: served or refused, nothing else
    served = np.array([lat for status, lat, *_ in second if status == 200])
    refused = [(lat, retry) for status, lat, retry, _ in second if status == 429]
    offered = len(second) / RUN_S
    capacity = 1 / DELAY_S
    print(
        f"\noverload: offered {offered:.0f} req/s against a capacity of {capacity:.0f} req/s "
        f"({offered / capacity:.1f}x); served {len(served)}, refused {len(refused)}; served p50 "
        f"{np.percentile(served, 50) * 1000:.0f} ms p99 {np.percentile(served, 99) * 1000:.0f} ms; refused p99 "
        f"{np.percentile([lat for lat, _ in refused], 99) * 1000:.1f} ms; server RSS {after_first:.0f} -> "
        f"{_rss_mib(srv.process.pid):.0f} MiB"
    )
    assert offered > 2.5 * capacity  # the test really overloads
    assert len(served) >= 0.6 * capacity * RUN_S  # and the model kept working at capacity
    # At most max_queue + 1 requests are ahead of an admitted one, so its latency is bounded by
    # about (max_queue + 1) x the compute time; queueing without bound, CLIENTS x the compute time.
    # Measured against that baseline in the same run, since this machine is shared and noisy.
    baseline = asyncio.run(_load(srv.http_url, RUN_S, "unbounded"))
    queued = np.array([lat for status, lat, *_ in baseline if status == 200])
    print(
        f"baseline without a bound: served {len(queued)}, p50 {np.percentile(queued, 50) * 1000:.0f} ms "
        f"p99 {np.percentile(queued, 99) * 1000:.0f} ms; bounded/unbounded p50 "
        f"{np.percentile(served, 50) / np.percentile(queued, 50):.2f}x"
    )
    assert {status for status, *_ in baseline} == {200}
    assert np.percentile(served, 50) < np.percentile(queued, 50) / 2
    assert np.percentile(served, 99) < np.percentile(queued, 99)
    refusals = [lat for lat, _ in refused]
    # refusals come at once: about 2 ms on a quiet machine (the rest is this one-thread load generator)
    assert np.percentile(refusals, 50) < np.percentile(served, 50) / 2
    assert all(retry.isdigit() and int(retry) >= 1 for _, retry in refused)
    assert _rss_mib(srv.process.pid) - after_first < 30  # a second round of overload does not grow memory
    reply = httpx.post(srv.http_url + "/v2/models/slow/infer", json=request(3.0), timeout=10)
    assert reply.status_code == 200 and reply.json()["outputs"][0]["data"] == [6.0]
    metrics = httpx.get(srv.http_url + "/metrics", timeout=10).text
    rejected = 'modelserve_rejected_requests_total{model="slow",reason="queue_full",version="1"} '
    counted = float(next(line for line in metrics.splitlines() if line.startswith(rejected)).split()[-1])
    assert counted == len([s for s, *_ in first + second if s == 429])  # every refusal is counted


def test_refusal_names_the_limit_and_grpc_says_resource_exhausted(srv: Served) -> None:
    from modelserve.protocol.v2.grpc import messages as pb

    async def flood_and_probe() -> tuple[httpx.Response, grpc.RpcError | None]:
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=30) as client:
            # requests that take 1 s each, as many as the version admits (max_queue + 1 instance)
            slow = [
                asyncio.create_task(client.post("/v2/models/slow/infer", json=request(-1.0)))
                for _ in range(MAX_QUEUE + 1)
            ]
            await asyncio.sleep(0.3)
            refused = await client.post("/v2/models/slow/infer", json=request(1.0))
            error = None
            channel = grpc.aio.insecure_channel(srv.grpc_target)
            message = pb.ModelInferRequest(model_name="slow")
            message.inputs.add(name="x", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(1.0)
            try:
                await channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(message.SerializeToString())
            except grpc.RpcError as exc:
                error = exc
            await channel.close()
            assert all(r.status_code == 200 for r in await asyncio.gather(*slow))  # admitted ones are served
            return refused, error

    refused, error = asyncio.run(flood_and_probe())
    assert refused.status_code == 429
    assert "overloaded" in refused.json()["error"] and "limits.max_queue = 4" in refused.json()["error"]
    assert int(refused.headers["retry-after"]) >= 1
    assert error is not None and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "overloaded" in (error.details() or "")
    assert any(key == "retry-after" for key, _ in error.trailing_metadata() or ())
