"""``/metrics`` and ``/v2/models/{m}/stats`` after a known mix of good, bad and failing requests:
exact counts, histograms whose counts match, and the per-server figures."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from modelserve import testing
from tests.fixtures.models import _save_onnx, adder_model

# fails (a server error) on a negative input
FRAGILE = """\
import numpy as np

class Model:
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }

    def load(self, path):
        pass

    def predict(self, inputs):
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": inputs["x"]}
"""
GOOD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
BAD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}  # wrong shape


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.run]:
    root = tmp_path_factory.mktemp("metrics")
    _save_onnx(root / "adder" / "1" / "model.onnx", adder_model(1.0))
    (root / "adder" / "config.yaml").write_text("cache: on\n")
    (root / "fragile" / "1").mkdir(parents=True)
    (root / "fragile" / "1" / "model.py").write_text(textwrap.dedent(FRAGILE))
    (root / "fragile" / "config.yaml").write_text("batching: off\n")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    with testing.run(root, trust_code=True) as srv:
        _traffic(srv)
        yield srv


def _traffic(srv: testing.run) -> None:
    with httpx.Client(base_url=srv.http_url) as rest:
        for _ in range(5):  # the same request: 1 cache miss, then 4 hits
            assert rest.post("/v2/models/adder/infer", json=GOOD).status_code == 200
        for _ in range(2):
            assert rest.post("/v2/models/adder/infer", json=BAD).status_code == 400
        assert rest.post("/v1/models/adder:predict", json={"instances": [[1, 2, 3]]}).status_code == 200
        assert rest.post("/v2/models/nope/infer", json=GOOD).status_code == 404  # not counted: unknown model
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [-1]}]}
        for _ in range(2):
            assert rest.post("/v2/models/fragile/infer", json=body).status_code == 500
        body["inputs"][0]["data"] = [1]  # type: ignore[index]
        assert rest.post("/v2/models/fragile/infer", json=body).status_code == 200
    client = grpcclient.InferenceServerClient(srv.grpc_target)
    tensor = grpcclient.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.array([[4, 5, 6]], dtype=np.float32))
    for _ in range(3):
        client.infer("adder", [tensor])
    wrong = grpcclient.InferInput("x", [1, 2], "FP32")
    wrong.set_data_from_numpy(np.array([[1, 2]], dtype=np.float32))
    with pytest.raises(InferenceServerException):
        client.infer("adder", [wrong])
    client.close()


def _samples(srv: testing.run) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{srv.http_url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _get(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_exactly_by_outcome(server: testing.run) -> None:
    s = _samples(server)
    requests = "modelserve_requests_total"
    assert _get(s, requests, model="adder", version="1", protocol="rest", outcome="success") == 5
    assert _get(s, requests, model="adder", version="1", protocol="rest", outcome="client_error") == 2
    assert _get(s, requests, model="adder", version="1", protocol="tfserving", outcome="success") == 1
    assert _get(s, requests, model="adder", version="1", protocol="grpc", outcome="success") == 3
    assert _get(s, requests, model="adder", version="1", protocol="grpc", outcome="client_error") == 1
    assert _get(s, requests, model="fragile", version="1", protocol="rest", outcome="server_error") == 2
    assert _get(s, requests, model="fragile", version="1", protocol="rest", outcome="success") == 1
    assert not any(name == requests and ("model", "nope") in labels for name, labels in s)


def test_histogram_counts_match_the_requests(server: testing.run) -> None:
    s = _samples(server)
    for protocol, total in (("rest", 7), ("grpc", 4), ("tfserving", 1)):
        labels = {"model": "adder", "version": "1", "protocol": protocol}
        count = _get(s, "modelserve_request_duration_seconds_count", **labels)
        assert count == total
        assert _get(s, "modelserve_request_duration_seconds_bucket", **labels, le="+Inf") == total
        buckets = sorted(
            (float(dict(labels_)["le"]), value)
            for (name, labels_), value in s.items()
            if name == "modelserve_request_duration_seconds_bucket"
            and {k: v for k, v in labels_ if k != "le"} == labels
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
        assert buckets[0][0] == 0.0001 and buckets[-2][0] == 10.0


def test_batches_queue_compute_and_cache(server: testing.run) -> None:
    s = _samples(server)
    adder = {"model": "adder", "version": "1"}
    # the cache keys on the validated inputs, whatever the protocol: the 5 REST requests and the v1
    # one send the same row (1 miss, 5 hits), the 3 gRPC ones another (1 miss, 2 hits)
    assert _get(s, "modelserve_cache_requests_total", **adder, result="hit") == 5 + 2
    assert _get(s, "modelserve_cache_requests_total", **adder, result="miss") == 1 + 1
    runs = _get(s, "modelserve_compute_duration_seconds_count", **adder)
    assert runs == 2  # only misses reach the runtime
    assert _get(s, "modelserve_batch_rows_count", **adder) == runs
    assert _get(s, "modelserve_queue_duration_seconds_count", **adder) == 2


def test_server_figures(server: testing.run) -> None:
    s = _samples(server)
    assert _get(s, "modelserve_model_versions", state="ready") == 2
    assert _get(s, "modelserve_model_versions", state="failed") == 1
    assert _get(s, "modelserve_model_load_failures_total", model="broken") == 1
    assert _get(s, "modelserve_model_load_duration_seconds_count", model="adder") == 1
    assert _get(s, "modelserve_inflight_requests", model="adder", version="1") == 0
    assert _get(s, "process_resident_memory_bytes") > 0


def test_stats_endpoint_has_the_same_figures(server: testing.run) -> None:
    doc = httpx.get(f"{server.http_url}/v2/models/adder/stats").json()
    (stats,) = doc["model_stats"]
    assert stats["name"] == "adder" and stats["version"] == "1"
    assert stats["inference_count"] == 5 + 1 + 3
    assert stats["inference_stats"]["fail"]["count"] == 3
    assert stats["inference_stats"]["cache_hit"]["count"] == 7
    assert stats["execution_count"] == 2
    assert httpx.get(f"{server.http_url}/v2/models/adder/versions/1/stats").json() == doc
    assert httpx.get(f"{server.http_url}/v2/models/nope/stats").status_code == 404


def test_grpc_model_statistics_for_tritonclient(server: testing.run) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    stats = client.get_inference_statistics("adder", as_json=True)
    everything = client.get_inference_statistics(as_json=True)
    client.close()
    (adder,) = stats["model_stats"]
    assert adder["name"] == "adder" and adder["version"] == "1"
    assert int(adder["inference_count"]) == 5 + 1 + 3
    assert int(adder["inference_stats"]["fail"]["count"]) == 3
    assert int(adder["execution_count"]) == 2
    assert {s["name"] for s in everything["model_stats"]} == {"adder", "fragile"}
