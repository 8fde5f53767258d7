"""The whole bad-input catalog (REST JSON, binary REST, gRPC), sent round after round to a server in
a process of its own: every case is answered as the tables say each time, and the server's memory
does not grow with the rounds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tests.fixtures.serve_process import Served
from tests.reliability import test_bad_input, test_bad_input_binary, test_bad_input_grpc

ROUNDS = 4


@pytest.fixture(scope="module")
def served(repo: Path) -> Iterator[Served]:
    with Served(repo) as server:
        yield server


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _one_round(served: Served) -> int:
    """Send every case once and check its status; the number of cases sent."""
    sent = 0
    with httpx.Client(base_url=served.http_url, timeout=60) as client:
        for case in test_bad_input.CASES:
            _, method, path, body, status, _ = case
            assert client.request(method, path, content=body or None).status_code == status, case[0]
            sent += 1
        for param in test_bad_input_binary.CASES:
            path, body, headers, status, _ = param.values
            assert client.post(path, content=body, headers=headers).status_code == status, param.id
            sent += 1
    with grpc.insecure_channel(served.grpc_target, options=[("grpc.max_send_message_length", -1)]) as channel:
        for param in test_bad_input_grpc.CASES:
            method, body, code, _ = param.values
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary(method)(body, timeout=60)
            assert err.value.code() is code, param.id
            sent += 1
    return sent


def test_the_catalog_round_after_round_keeps_memory_flat(served: Served) -> None:
    sent = _one_round(served)  # the first round warms every code path (imports, caches, arenas)
    warmed = _rss_mib(served.process.pid)
    for _ in range(ROUNDS - 1):
        assert _one_round(served) == sent
    grown = _rss_mib(served.process.pid) - warmed
    print(
        f"\nbad input: {sent} cases x {ROUNDS} rounds, all answered as expected; RSS {warmed:.0f} MiB, +{grown:.1f} MiB"
    )
    assert sent >= 60
    assert grown < 25, f"RSS grew {grown:.1f} MiB over {ROUNDS - 1} rounds of {sent} bad requests"
    assert httpx.get(served.http_url + "/v2/health/ready", timeout=10).status_code == 200
