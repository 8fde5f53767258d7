"""Open Inference Protocol v2 over REST, against a real server with httpx."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from modelserve.types import DATATYPES
from tests.conftest import IRIS_REQUEST, IRIS_ROW
from tests.fixtures.models import identity_batch


def test_health_and_server_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "modelserve"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_lists_served_versions_and_signature(client: httpx.Client) -> None:
    meta = client.get("/v2/models/adder").json()
    assert meta["versions"] == ["2", "3"]  # version_policy latest: 2 of versions 1, 2, 3
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]
    assert client.get("/v2/models/adder/versions/2").json()["versions"] == ["2", "3"]
    assert client.get("/v2/models/adder/versions/1").status_code == 404


def test_infer_flat_and_nested_data_give_same_answer(client: httpx.Client, repo) -> None:
    flat = client.post("/v2/models/iris/infer", json=IRIS_REQUEST).json()
    nested_request = {"inputs": [{**IRIS_REQUEST["inputs"][0], "data": [IRIS_ROW]}]}
    nested = client.post("/v2/models/iris/infer", json=nested_request).json()
    assert flat == nested
    assert flat["model_name"] == "iris" and flat["model_version"] == "1"
    label, probabilities = flat["outputs"]
    assert label == {"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}
    session = ort.InferenceSession(str(repo / "iris" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": np.array([IRIS_ROW], dtype=np.float32)})[1]
    assert probabilities["shape"] == [1, 3]
    np.testing.assert_array_equal(np.array(probabilities["data"], dtype=np.float32), expected.ravel())


def test_id_is_echoed_and_outputs_subset_is_honoured(client: httpx.Client) -> None:
    body = {**IRIS_REQUEST, "id": "req-42", "outputs": [{"name": "probabilities"}]}
    response = client.post("/v2/models/iris/infer", json=body).json()
    assert response["id"] == "req-42"
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]
    assert "id" not in client.post("/v2/models/iris/infer", json=IRIS_REQUEST).json()


def test_versions_route_to_their_own_model(client: httpx.Client) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0, 1, 2]}]}
    v2 = client.post("/v2/models/adder/versions/2/infer", json=body).json()
    v3 = client.post("/v2/models/adder/versions/3/infer", json=body).json()
    latest = client.post("/v2/models/adder/infer", json=body).json()
    assert v2["outputs"][0]["data"] == [2, 3, 4] and v2["model_version"] == "2"
    assert v3["outputs"][0]["data"] == [3, 4, 5]
    assert latest["model_version"] == "3"


def test_every_datatype_round_trips_through_json(client: httpx.Client) -> None:
    arrays = identity_batch()
    inputs = [
        {
            "name": f"in_{dt}",
            "datatype": dt,
            "shape": list(a.shape),
            "data": [b.decode() for b in a.ravel()] if dt == "BYTES" else a.tolist(),
        }
        for dt, a in arrays.items()
    ]
    response = client.post("/v2/models/identity/infer", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    for dt, array in arrays.items():
        out = outputs[f"out_{dt}"]
        assert out["datatype"] == dt and out["shape"] == [3, 2]
        got = [s.encode() for s in out["data"]] if dt == "BYTES" else out["data"]
        np.testing.assert_array_equal(np.array(got, dtype=DATATYPES[dt]), array.ravel(), err_msg=dt)


@pytest.mark.parametrize(
    ("path", "status", "ready"),
    [
        ("/v2/models/iris/ready", 200, True),
        ("/v2/models/iris/versions/1/ready", 200, True),
        ("/v2/models/broken/ready", 503, False),
    ],
)
def test_model_readiness(client: httpx.Client, path: str, status: int, ready: bool) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["ready"] is ready


def test_scikit_learn_model_accepts_fp32_and_fp64(client: httpx.Client) -> None:
    for datatype in ("FP32", "FP64"):
        body = {"inputs": [{**IRIS_REQUEST["inputs"][0], "datatype": datatype}]}
        response = client.post("/v2/models/iris-skops/infer", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [0]


def test_unknown_route_and_wrong_method(client: httpx.Client) -> None:
    assert client.get("/v3/nothing").status_code == 404
    response = client.get("/v2/models/iris/infer")
    assert response.status_code == 405 and "POST" in response.json()["error"]


def test_the_example_graph_averages_the_two_iris_models(client: httpx.Client) -> None:
    answers = [client.post(f"/v2/models/{m}/infer", json=IRIS_REQUEST) for m in ("iris", "iris-skops", "iris-ensemble")]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    outputs = [{o["name"]: o for o in a.json()["outputs"]} for a in answers]
    onnx, sklearn, ensemble = (np.array(o["probabilities"]["data"]) for o in outputs)
    np.testing.assert_allclose(ensemble, (onnx + sklearn) / 2, rtol=1e-6)
    assert ensemble.argmax() == outputs[2]["label"]["data"][0] == outputs[0]["label"]["data"][0]
    assert answers[2].json()["model_name"] == "iris-ensemble"
