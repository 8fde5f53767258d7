"""Inference graphs through the real server and real clients (REST v2, TF Serving REST, gRPC):
the graph answers what its parts compute, shows its own signature, fails with the reason when a
model it calls is missing, rejects bad input with a 400, and a router node splits its requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skops.io as sio
import tritonclient.grpc as tg
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelserve import testing
from tests.fixtures.models import _save_onnx, adder_model

Parts = tuple[Path, LogisticRegression, dict[str, Any]]  # repository, classifier, standardisation stats
ROWS = [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5], [6.7, 3.0, 5.2, 2.3]]  # setosa, versicolor, virginica

ENSEMBLE = """\
inputs:
  - {name: x, datatype: FP32, shape: [-1, 4]}
outputs:
  - {name: probabilities, from: vote.probabilities}
  - {name: label, from: poll.label}
nodes:
  - {name: scale, kind: transformer, transform: standardize, stats: stats.json, inputs: {x: x}}
  - {name: a, kind: model, model: iris-skops, inputs: {input: scale.y}}
  - {name: b, kind: model, model: iris, inputs: {input: scale.y}}
  - {name: vote, kind: combiner, combine: mean, inputs: [a.probabilities, b.probabilities]}
  - {name: poll, kind: combiner, combine: majority_vote, inputs: [a.label, b.label, vote.probabilities]}
"""

SPLIT = """\
inputs: [{name: x, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: y, from: pick.y}]
nodes:
  - name: pick
    kind: router
    routes: [{model: adder, version: 1, weight: 1}, {model: adder, version: 2, weight: 1}]
    inputs: {x: x}
"""

MISSING = """\
inputs: [{name: x, datatype: FP32, shape: [-1, 4]}]
outputs: [{name: p, from: a.probabilities}]
nodes:
  - {name: a, kind: model, model: nope, inputs: {input: x}}
"""


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Parts:
    """A repository: iris classifiers trained on standardised features (ONNX and skops), the
    adder (versions 1 and 2), and three graphs over them."""
    root = tmp_path_factory.mktemp("graphs")
    iris = load_iris()
    stats = {"mean": iris.data.mean(axis=0).tolist(), "std": iris.data.std(axis=0).tolist()}
    z = (iris.data - iris.data.mean(axis=0)) / iris.data.std(axis=0)
    classifier = LogisticRegression(max_iter=1000).fit(z, iris.target)
    options = {id(classifier): {"zipmap": False}}
    onnx_model = to_onnx(classifier, initial_types=[("input", FloatTensorType([None, 4]))], options=options)
    (root / "iris" / "1").mkdir(parents=True)
    (root / "iris" / "1" / "model.onnx").write_bytes(onnx_model.SerializeToString())
    (root / "iris" / "config.yaml").write_text("signature: {outputs: [{name: label}, {name: probabilities}]}\n")
    (root / "iris-skops" / "1").mkdir(parents=True)
    sio.dump(classifier, root / "iris-skops" / "1" / "model.skops")
    for version in (1, 2):
        _save_onnx(root / "adder" / str(version) / "model.onnx", adder_model(float(version)))
    (root / "adder" / "config.yaml").write_text("version_policy: {latest: 2}\n")
    for name, text in (("ensemble", ENSEMBLE), ("split", SPLIT), ("broken-graph", MISSING)):
        (root / name).mkdir()
        (root / name / "graph.yaml").write_text(text)
    (root / "ensemble" / "stats.json").write_text(json.dumps(stats))
    return root, classifier, stats


@pytest.fixture(scope="module")
def server(parts: Parts) -> Iterator[testing.run]:
    with testing.run(parts[0], http_port=0, grpc_port=0) as srv:
        yield srv


@pytest.fixture
def client(server: testing.run) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as c:
        yield c


def _expected(client: httpx.Client, parts: Parts) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble computed from its parts: standardise (float32, as the graph's FP32 input),
    the skops classifier in-process, the ONNX one through its own endpoint, then the mean."""
    _, classifier, stats = parts
    x = np.array(ROWS, np.float32)
    z = (x - np.array(stats["mean"], np.float32)) / np.array(stats["std"], np.float32)
    skops_p = classifier.predict_proba(z.astype(np.float64))
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(z.shape), "data": z.ravel().tolist()}]}
    outputs = {o["name"]: o for o in client.post("/v2/models/iris/infer", json=body).json()["outputs"]}
    onnx_p = np.array(outputs["probabilities"]["data"], np.float32).reshape(-1, 3)
    mean = (skops_p + onnx_p.astype(np.float64)) / 2
    labels = classifier.predict(z.astype(np.float64))
    assert list(labels) == [0, 1, 2] == list(onnx_p.argmax(axis=1)) == list(mean.argmax(axis=1))  # a clear vote
    return mean, labels


def test_rest_v2_answer_is_the_composition_of_its_parts(client: httpx.Client, parts: Parts) -> None:
    mean, labels = _expected(client, parts)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": ROWS}]}
    doc = client.post("/v2/models/ensemble/infer", json=body).json()
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert doc["model_name"] == "ensemble" and doc["model_version"] == "1"
    assert outputs["probabilities"]["datatype"] == "FP64" and outputs["probabilities"]["shape"] == [3, 3]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (3, 3)), mean, rtol=1e-6, atol=1e-9)
    assert outputs["label"]["data"] == list(labels)


def test_tf_serving_rest_and_grpc_give_the_same(client: httpx.Client, server: testing.run, parts: Parts) -> None:
    mean, labels = _expected(client, parts)
    predictions = client.post("/v1/models/ensemble:predict", json={"instances": ROWS}).json()["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in predictions], mean, rtol=1e-6, atol=1e-9)
    assert [p["label"] for p in predictions] == list(labels)
    triton = tg.InferenceServerClient(server.grpc_target)
    try:
        tensor = tg.InferInput("x", [3, 4], "FP32")
        tensor.set_data_from_numpy(np.array(ROWS, np.float32))
        result = triton.infer("ensemble", [tensor])
        np.testing.assert_allclose(result.as_numpy("probabilities"), mean, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(result.as_numpy("label"), labels)
        meta = triton.get_model_metadata("ensemble", as_json=True)
        assert meta["platform"] == "modelserve_graph"
    finally:
        triton.close()


def test_metadata_shows_the_graph_signature(client: httpx.Client) -> None:
    meta = client.get("/v2/models/ensemble").json()
    assert meta["name"] == "ensemble" and meta["platform"] == "modelserve_graph" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    assert client.get("/v2/models/ensemble/ready").status_code == 200


def test_a_graph_calling_a_missing_model_fails_with_the_reason(client: httpx.Client) -> None:
    (row,) = [r for r in client.post("/v2/repository/index", json={}).json() if r["name"] == "broken-graph"]
    assert row["state"] == "FAILED"
    assert (
        "graph.yaml" in row["reason"] and "node 'a' calls model 'nope', which is not in the repository" in row["reason"]
    )
    ready = client.get("/v2/models/broken-graph/ready")
    assert ready.status_code == 503 and "nope" in ready.json()["error"]
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": ROWS[0]}]}
    assert client.post("/v2/models/broken-graph/infer", json=body).status_code == 503


def test_bad_input_to_the_graph_is_a_400_naming_it(client: httpx.Client) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    response = client.post("/v2/models/ensemble/infer", json=body)
    assert response.status_code == 400
    assert "input 'x'" in response.json()["error"] and "[-1, 4]" in response.json()["error"]
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROWS[0]}]}
    response = client.post("/v2/models/ensemble/infer", json=body)
    assert response.status_code == 400 and "has no input 'input'" in response.json()["error"]


def test_a_router_node_splits_between_its_routes(client: httpx.Client) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [10, 20, 30]}]}
    answers = []
    for _ in range(60):
        response = client.post("/v2/models/split/infer", json=body)
        assert response.status_code == 200, response.text
        answers.append(tuple(response.json()["outputs"][0]["data"]))
    # version 1 adds 1, version 2 adds 2; both are chosen (all 60 the same: p = 2 ** -59)
    assert set(answers) == {(11.0, 21.0, 31.0), (12.0, 22.0, 32.0)}
    stats = {v["version"]: v for v in client.get("/v2/models/adder/stats").json()["model_stats"]}
    assert stats["1"]["inference_count"] + stats["2"]["inference_count"] >= 60
