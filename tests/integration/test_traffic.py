"""Traffic policies driven by real traffic: A/B splits, bandits, canaries, shadows, the admin API.

The models are code models (model.py) whose versions answer differently (version 1 adds 1,
version 2 adds 2...), so each answer tells which version computed it; version 3 fails half of its
requests, version 4 is slow, version 5 answers as version 1 does.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelserve import testing
from modelserve.repository.registry import RegistryStore, default_url

SIGNATURE = """\
    signature = {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}],
    }
"""
VERSIONS = {
    1: "return {'y': inputs['x'] + 1}",
    2: "return {'y': inputs['x'] + 2}",
    3: "if random.random() < 0.5:\n            raise RuntimeError('injected failure')\n"
    "        return {'y': inputs['x'] + 3}",
    4: "time.sleep(0.25)\n        return {'y': inputs['x'] + 1}",
    5: "return {'y': inputs['x'] + 1}",
}
SOURCE = """\
import random
import time


class Model:
{signature}
    def predict(self, inputs):
        {body}
"""


def make_repo(root: Path, traffic: dict[str, Any] | None, versions: tuple[int, ...] = (1, 2, 3, 4)) -> Path:
    model = root / "scorer"
    for version in versions:
        (model / str(version)).mkdir(parents=True)
        (model / str(version) / "model.py").write_text(SOURCE.format(signature=SIGNATURE, body=VERSIONS[version]))
    config: dict[str, Any] = {"version_policy": {"all": True}}
    if traffic is not None:
        config["traffic"] = traffic
    (model / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def body(x: float = 0.0, **parameters: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [x]}]}
    if parameters:
        doc["parameters"] = parameters
    return doc


def answered_by(response: httpx.Response) -> int:
    """Which version computed the answer (version v adds v; versions 4 and 5 add 1 too)."""
    assert response.status_code == 200, response.text
    return round(response.json()["outputs"][0]["data"][0])


def serve(repo: Path, **settings: Any) -> testing.run:
    return testing.run(repo, trust_code=True, **settings)


# -- A/B split ---------------------------------------------------------------------------------


def test_a_b_split_shares_are_within_tolerance_and_sticky_keys_never_switch(tmp_path: Path) -> None:
    traffic = {
        "policy": "split",
        "variants": [
            {"name": "control", "version": 1, "weight": 70},
            {"name": "treatment", "version": 2, "weight": 30},
        ],
        "sticky": {"header": "x-user-id", "parameter": "user"},
    }
    with serve(make_repo(tmp_path, traffic)) as srv, httpx.Client(base_url=srv.http_url) as client:
        users = [f"user-{i}" for i in range(1500)]
        first: dict[str, str] = {}
        for user in users:
            r = client.post("/v2/models/scorer/infer", json=body(), headers={"x-user-id": user})
            variant = r.json()["parameters"]["variant"]
            assert r.headers["x-model-variant"] == variant
            assert answered_by(r) == {"control": 1, "treatment": 2}[variant]
            first[user] = variant
        n, treated = len(users), sum(v == "treatment" for v in first.values())
        # binomial: 30 % of 1500 within 4.5 standard deviations (a false alarm in ~1 run in 10^5)
        assert abs(treated - 0.3 * n) < 4.5 * math.sqrt(n * 0.3 * 0.7), treated
        for user in random.Random(7).sample(users, 200):  # asked again, by header or by parameter
            by_header = client.post("/v2/models/scorer/infer", json=body(), headers={"x-user-id": user})
            by_parameter = client.post("/v2/models/scorer/infer", json=body(user=user))
            assert by_header.json()["parameters"]["variant"] == first[user]
            assert by_parameter.json()["parameters"]["variant"] == first[user]
        # an explicit version is never re-routed
        pinned = client.post("/v2/models/scorer/versions/2/infer", json=body(), headers={"x-user-id": users[0]})
        assert answered_by(pinned) == 2 and "variant" not in pinned.json().get("parameters", {})
        # TF Serving REST is routed too; the variant comes back in a header
        v1 = client.post("/v1/models/scorer:predict", json={"instances": [0.0]}, headers={"x-user-id": users[0]})
        assert v1.status_code == 200 and v1.headers["x-model-variant"] == first[users[0]]
        shown = client.get("/v2/models/scorer/traffic").json()
        assert shown["source"] == "config" and shown["policy"]["policy"] == "split"
        counted = {v["name"]: v["requests"] for v in shown["state"]["variants"]}
        assert sum(counted.values()) == n + 400 + 1


def test_split_over_grpc_returns_the_variant_in_the_response_parameters(tmp_path: Path) -> None:
    import numpy as np
    import tritonclient.grpc as grpcclient

    traffic = {"policy": "split", "variants": [{"name": "only", "version": 2, "weight": 1}], "sticky": {"header": "k"}}
    with serve(make_repo(tmp_path, traffic, versions=(1, 2))) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_target)
        x = grpcclient.InferInput("x", [1], "FP64")
        x.set_data_from_numpy(np.array([0.0]))
        result = client.infer("scorer", [x], headers={"k": "u1"})
        assert result.as_numpy("y").tolist() == [2.0]
        assert result.get_response().parameters["variant"].string_param == "only"
        client.close()


# -- bandits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["epsilon_greedy", "thompson"])
def test_a_bandit_converges_to_the_better_arm_and_remembers_it_across_a_restart(tmp_path: Path, policy: str) -> None:
    traffic: dict[str, Any] = {
        "policy": policy,
        "variants": [{"name": "weak", "version": 1}, {"name": "strong", "version": 2}],
    }
    if policy == "epsilon_greedy":
        traffic["epsilon"] = 0.1
    repo = make_repo(tmp_path, traffic, versions=(1, 2))
    success = {"weak": 0.2, "strong": 0.8}  # simulated: how often a user is pleased by each
    rng = random.Random(11)
    chosen: list[str] = []
    with serve(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        for i in range(500):
            r = client.post("/v2/models/scorer/infer", json=body())
            answer = r.json()
            variant = answer["parameters"]["variant"]
            chosen.append(variant)
            assert answered_by(r) == {"weak": 1, "strong": 2}[variant]
            reward = 1.0 if rng.random() < success[variant] else 0.0
            fed = client.post("/v2/models/scorer/feedback", json={"id": answer["id"], "reward": reward})
            assert fed.status_code == 200, fed.text
            if i == 0:  # feedback is taken once per request, and checked
                again = client.post("/v2/models/scorer/feedback", json={"id": answer["id"], "reward": 1.0})
                assert again.status_code == 404 and answer["id"] in again.json()["error"]
        unknown = client.post("/v2/models/scorer/feedback", json={"id": "nope", "reward": 1})
        assert unknown.status_code == 404
        no_model = client.post("/v2/models/ghost/feedback", json={"id": "nope", "reward": 1})
        assert no_model.status_code == 404 and "ghost" in no_model.json()["error"]
        malformed = client.post("/v2/models/scorer/feedback", json={"id": "x"})
        assert malformed.status_code == 400 and "reward" in malformed.json()["error"]
        bad = client.post("/v2/models/scorer/feedback", json={"id": "x", "reward": "good"})
        assert bad.status_code == 400 and "reward" in bad.json()["error"]
        own = client.post("/v2/models/scorer/infer", json={**body(), "id": "mine-1"})
        assert own.json()["id"] == "mine-1"  # the client's own id is the one to give feedback with
        assert client.post("/v2/models/scorer/feedback", json={"id": "mine-1", "reward": 1}).status_code == 200
        arms = {a["name"]: a for a in client.get("/v2/models/scorer/traffic").json()["state"]["bandit"]}
    late = Counter(chosen[-200:])
    assert late["strong"] / 200 > 0.75, late
    assert arms["strong"]["mean_reward"] > arms["weak"]["mean_reward"]
    # what it learnt was saved in the registry database, and a new server starts from it
    with serve(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        restored = {a["name"]: a for a in client.get("/v2/models/scorer/traffic").json()["state"]["bandit"]}
    assert restored["strong"]["pulls"] == arms["strong"]["pulls"]
    assert restored["strong"]["rewards"] == arms["strong"]["rewards"]


# -- canary ------------------------------------------------------------------------------------


def canary(candidate: int, **rules: Any) -> dict[str, Any]:
    return {"policy": "canary", "canary": {"stable": 1, "candidate": candidate, **rules}}


def test_a_failing_canary_is_rolled_back_automatically_while_stable_serves_everything(tmp_path: Path) -> None:
    rules = {"steps": [0.5, 1.0], "window_s": 30, "min_requests": 20, "promote_after_s": 0}
    repo = make_repo(tmp_path, canary(3, **rules), versions=(1, 3))
    statuses: list[tuple[int, int | None]] = []  # (HTTP status, version that answered)
    with serve(repo) as srv, httpx.Client(base_url=srv.http_url) as client:

        def one(_: int) -> tuple[int, int | None]:
            r = client.post("/v2/models/scorer/infer", json=body())
            return r.status_code, (answered_by(r) if r.status_code == 200 else None)

        deadline = time.monotonic() + 20
        with ThreadPoolExecutor(4) as pool:
            while time.monotonic() < deadline:
                statuses += pool.map(one, range(40))
                state = client.get("/v2/models/scorer/traffic").json()["state"]["canary"]
                if state["status"] == "rolled_back":
                    break
        assert state["status"] == "rolled_back" and state["share"] == 0.0, state
        assert "error rate" in state["reason"]
        rolled_back_after = len(statuses)
        after = [one(i) for i in range(200)]
        metrics = client.get("/metrics").text
        shown = client.get("/v2/models/scorer/traffic").json()["state"]
    assert rolled_back_after <= 400, f"the rollback took {rolled_back_after} requests"
    failures = [s for s in statuses if s[0] != 200]
    assert failures and all(s == (500, None) for s in failures)  # only the candidate's injected failures
    assert all(s == (200, 1) for s in after)  # after the rollback, stable answers everything
    stable = next(v for v in shown["variants"] if v["name"] == "stable")
    assert stable["server_errors"] == 0 and stable["requests"] >= 200
    assert 'modelserve_canary_rollbacks_total{model="scorer"} 1.0' in metrics
    assert 'modelserve_canary_share{model="scorer"} 0.0' in metrics
    with RegistryStore(default_url(repo)) as store:
        events = [e for e in store.history("scorer") if e.action == "canary_rollback"]
    assert len(events) == 1 and events[0].version == 3 and "error rate" in events[0].reason


def test_a_healthy_canary_is_promoted_in_steps(tmp_path: Path) -> None:
    rules = {"steps": [0.2, 0.5, 1.0], "window_s": 30, "min_requests": 5, "promote_after_s": 1, "max_p99_ratio": 50}
    repo = make_repo(tmp_path, canary(2, **rules), versions=(1, 2))
    shares = []
    with serve(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for _ in range(20):
                assert client.post("/v2/models/scorer/infer", json=body()).status_code == 200
            state = client.get("/v2/models/scorer/traffic").json()["state"]["canary"]
            if not shares or shares[-1] != state["share"]:
                shares.append(state["share"])
            if state["status"] == "promoted":
                break
        answers = Counter(answered_by(client.post("/v2/models/scorer/infer", json=body())) for _ in range(50))
    assert state["status"] == "promoted", state
    assert shares == [0.2, 0.5, 1.0]
    assert answers == {2: 50}  # the candidate now takes all the traffic
    with RegistryStore(default_url(repo)) as store:
        steps = [(e.details["kind"], e.details["share"]) for e in store.history("scorer") if e.action == "canary_step"]
    # stepped up twice, then promoted once it held at the last step for promote_after_s
    assert steps == [("step", 0.5), ("step", 1.0), ("promoted", 1.0)]


# -- shadow ------------------------------------------------------------------------------------


def shadowed(root: Path, target: int) -> Path:
    repo = make_repo(root, {"shadow": {"target": target, "share": 1.0}}, versions=(1, 2, 3, 4, 5))
    config = yaml.safe_load((repo / "scorer" / "config.yaml").read_text())
    (repo / "scorer" / "config.yaml").write_text(yaml.safe_dump({**config, "default_version": 1}))
    return repo


def shadow_stats(client: httpx.Client, expected: int) -> dict[str, int]:
    """The shadow figures once ``expected`` mirrors have ended (they run after the answers)."""
    deadline = time.monotonic() + 20
    while True:
        stats: dict[str, int] = client.get("/v2/models/scorer/traffic").json()["state"]["shadow"]
        if sum(stats[k] for k in ("agreed", "disagreed", "errors", "dropped")) >= expected:
            return stats
        assert time.monotonic() < deadline, stats
        time.sleep(0.05)


@pytest.mark.parametrize(("shadow", "result"), [(3, "errors"), (2, "disagreed"), (5, "agreed")])
def test_shadow_traffic_never_changes_or_fails_the_callers_answer(tmp_path: Path, shadow: int, result: str) -> None:
    with serve(shadowed(tmp_path, shadow)) as srv, httpx.Client(base_url=srv.http_url) as client:
        for _ in range(30):
            r = client.post("/v2/models/scorer/infer", json=body())
            assert answered_by(r) == 1  # the primary (default version 1) answers, whatever the shadow does
            assert "x-model-variant" not in r.headers  # a shadow alone chooses no variant
        pinned = client.post("/v2/models/scorer/versions/2/infer", json=body())  # explicit: not mirrored
        assert answered_by(pinned) == 2
        stats = shadow_stats(client, 30)
        metrics = client.get("/metrics").text
    # mirrors beyond what half the inference threads can run at once are dropped, and counted
    assert stats["mirrored"] + stats["dropped"] == 30 and stats["mirrored"] >= 15, stats
    assert stats[result] >= (5 if result == "errors" else stats["mirrored"]), stats
    label = {"errors": "error"}.get(result, result)
    assert f'modelserve_shadow_requests_total{{model="scorer",result="{label}"}} {float(stats[result])}' in metrics


def test_a_slow_shadow_adds_no_latency_to_the_caller(tmp_path: Path) -> None:
    with serve(shadowed(tmp_path, 4)) as srv, httpx.Client(base_url=srv.http_url) as client:
        latencies = []
        for _ in range(20):
            started = time.perf_counter()
            r = client.post("/v2/models/scorer/infer", json=body())
            latencies.append(time.perf_counter() - started)
            assert answered_by(r) == 1
        stats = shadow_stats(client, 20)
    assert sorted(latencies)[10] < 0.1, latencies  # the shadow (version 4) takes 0.25 s a request
    assert stats["agreed"] >= 1 and stats["agreed"] + stats["dropped"] == 20


# -- the admin API -----------------------------------------------------------------------------


def test_an_override_is_audited_survives_a_restart_and_clears_back_to_config(tmp_path: Path) -> None:
    config_policy = {"policy": "split", "variants": [{"name": "one", "version": 1}]}
    repo = make_repo(tmp_path, config_policy, versions=(1, 2))
    override = {"policy": "split", "variants": [{"name": "two", "version": 2}]}
    with serve(repo) as srv, httpx.Client(base_url=srv.http_url) as client:  # control API off
        refused = client.put("/v2/models/scorer/traffic", json={"policy": override})
        assert refused.status_code == 403
    with serve(repo, control_api=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        bad = client.put("/v2/models/scorer/traffic", json={"policy": {**override, "policy": "coin"}})
        assert bad.status_code == 400 and "traffic.policy" in bad.json()["error"] and "coin" in bad.json()["error"]
        unknown = client.put("/v2/models/ghost/traffic", json={"policy": override})
        assert unknown.status_code == 404
        put = client.put("/v2/models/scorer/traffic", json={"policy": override, "reason": "try two", "actor": "ann"})
        assert put.status_code == 200 and put.json()["source"] == "override"
        assert answered_by(client.post("/v2/models/scorer/infer", json=body())) == 2
    with serve(repo, control_api=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        assert client.get("/v2/models/scorer/traffic").json()["source"] == "override"
        assert answered_by(client.post("/v2/models/scorer/infer", json=body())) == 2
        cleared = client.request("DELETE", "/v2/models/scorer/traffic", json={"reason": "done", "actor": "ann"})
        assert cleared.status_code == 200 and cleared.json()["source"] == "config"
        assert answered_by(client.post("/v2/models/scorer/infer", json=body())) == 1
    with RegistryStore(default_url(repo)) as store:
        audited = [(e.action, e.actor, e.reason) for e in store.history("scorer") if e.action == "traffic"]
    assert audited == [("traffic", "ann", "try two"), ("traffic", "ann", "done")]
