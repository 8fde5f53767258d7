"""Faults inside the server: a predict that raises or hangs (in a thread or a worker process), a
load that raises or hangs, an unload while requests run. Each time: every accepted request gets
exactly one answer, success or an explicit error, and the server goes on serving correctly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from modelserve import testing
from tests.fixtures.slow_model import request, write_slow_model

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.run]:
    repo = tmp_path_factory.mktemp("faults")
    limits = {"timeout_s": TIMEOUT_S, "load_timeout_s": 2}
    write_slow_model(repo, "batched", config={"instances": 1, "limits": limits})
    write_slow_model(repo, "unbatched", config={"batching": False, "limits": limits})
    # calls serialised by the runtime's lock: a hung call holds it, so only a fresh runtime helps
    write_slow_model(repo, "serial", config={"instances": 1, "limits": limits}, thread_safe=False)
    write_slow_model(repo, "worker", config={"processes": 1, "batching": False, "limits": limits})
    (write_slow_model(repo, "load-fails") / "load_fails").write_text("")
    (write_slow_model(repo, "load-hangs", config={"limits": {"load_timeout_s": 1}}) / "load_delay").write_text("4")
    write_slow_model(repo, "unload-me", delay_s=0.5)
    with testing.run(repo, trust_code=True, control_api=True) as server:
        yield server


def _infer(srv: testing.run, model: str, value: float, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{srv.http_url}/v2/models/{model}/infer", json=request(value), timeout=timeout)


def _ok(reply: httpx.Response, value: float) -> None:
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == [2 * value]


def test_predict_that_raises_is_a_500_with_a_request_id_and_the_next_one_is_served(srv: testing.run) -> None:
    reply = _infer(srv, "batched", 13)
    assert reply.status_code == 500 and "internal error (request id" in reply.json()["error"]
    assert "unlucky" not in reply.text  # the model's own message stays in the log
    _ok(_infer(srv, "batched", 2), 2)


@pytest.mark.parametrize("model", ["batched", "unbatched"])
def test_hung_predict_gets_504_at_its_timeout_and_its_instance_is_recycled(srv: testing.run, model: str) -> None:
    abandoned = srv.server.pool.abandoned
    started = time.monotonic()
    reply = _infer(srv, model, -6)  # sleeps 6 s: hung, for a 1 s timeout
    took = time.monotonic() - started
    assert reply.status_code == 504, reply.text
    assert f"within its timeout of {TIMEOUT_S:g} s" in reply.json()["error"]
    assert TIMEOUT_S <= took < TIMEOUT_S + 1.0
    # the only instance is still inside the hung call, yet the next requests are served at once
    for value in (1.0, 2.0, 3.0):
        started = time.monotonic()
        _ok(_infer(srv, model, value), value)
        assert time.monotonic() - started < 0.8
    deadline = time.monotonic() + 2
    while srv.server.pool.abandoned == abandoned and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.server.pool.abandoned == abandoned + 1  # its thread was replaced, not waited for


def test_hung_predict_of_a_model_that_serialises_its_calls_gets_a_fresh_runtime(srv: testing.run) -> None:
    """Threads alone would not do: the hung call holds the model's lock. The runtime is recycled."""
    started = time.monotonic()
    reply = _infer(srv, "serial", -12)  # holds the model's lock for 12 s
    assert reply.status_code == 504 and "timeout" in reply.json()["error"], reply.text
    assert time.monotonic() - started < TIMEOUT_S + 1.0
    deadline = time.monotonic() + 5  # the fresh runtime loads meanwhile; requests before it may time out
    while time.monotonic() < deadline:
        reply = _infer(srv, "serial", 7.0)
        if reply.status_code == 200:
            break
        assert reply.status_code == 504, reply.text
    _ok(reply, 7.0)
    for value in (1.0, 2.0):
        started = time.monotonic()
        _ok(_infer(srv, "serial", value), value)
        assert time.monotonic() - started < 0.8  # served by the fresh runtime, not behind the hung call


def test_hung_predict_in_a_worker_process_kills_and_replaces_the_worker(srv: testing.run) -> None:
    started = time.monotonic()
    reply = _infer(srv, "worker", -30)
    assert reply.status_code == 504 and "timeout" in reply.json()["error"], reply.text
    assert time.monotonic() - started < TIMEOUT_S + 1.0
    # the replacement worker loads the model, then serves; nobody waits 30 s
    _ok(_infer(srv, "worker", 4.0), 4.0)
    assert time.monotonic() - started < 15


def test_failed_and_hung_loads_fail_only_their_own_model(srv: testing.run) -> None:
    index = {e["name"]: e for e in httpx.post(srv.http_url + "/v2/repository/index", timeout=10).json()}
    assert index["load-fails"]["state"] == "FAILED"
    assert "this version cannot load" in index["load-fails"]["reason"]
    assert index["load-hangs"]["state"] == "FAILED"
    assert "did not load within 1 s" in index["load-hangs"]["reason"]
    reply = _infer(srv, "load-hangs", 1)
    assert reply.status_code == 503 and "did not load within 1 s" in reply.json()["error"]
    assert httpx.get(srv.http_url + "/v2/health/ready", timeout=5).status_code == 200
    _ok(_infer(srv, "batched", 5), 5)


def test_unload_during_inflight_requests_answers_every_one(srv: testing.run) -> None:
    values = [float(v) for v in range(1, 7)]
    with ThreadPoolExecutor(len(values)) as clients:
        inflight = [clients.submit(_infer, srv, "unload-me", v) for v in values]
        time.sleep(0.2)  # all six are in: one computes, the rest queue
        unloaded = httpx.post(f"{srv.http_url}/v2/repository/models/unload-me/unload", timeout=30)
        replies = [f.result() for f in inflight]
    assert unloaded.status_code == 200, unloaded.text
    for value, reply in zip(values, replies, strict=True):
        _ok(reply, value)  # accepted before the unload: answered, correctly
    after = _infer(srv, "unload-me", 1)
    assert after.status_code in (404, 503) and "unload-me" in after.json()["error"]
