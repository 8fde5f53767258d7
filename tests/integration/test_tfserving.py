"""The TensorFlow Serving REST API, as a TF Serving client uses it."""

from __future__ import annotations

import httpx
import numpy as np
import skops.io as sio

IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def test_documented_sequence_works_unchanged(client: httpx.Client) -> None:
    status = client.get("/v1/models/iris/versions/1")
    assert status.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    meta = client.get("/v1/models/iris/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "iris", "signature_name": "", "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["input"]["dtype"] == "DT_FLOAT"
    assert signature["inputs"]["input"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "4", "name": ""},
    ]
    prediction = client.post("/v1/models/iris/versions/1:predict", json={"instances": IRIS}).json()
    assert [p["label"] for p in prediction["predictions"]] == [0, 2]
    assert len(prediction["predictions"][0]["probabilities"]) == 3


def test_unversioned_status_lists_every_version(client: httpx.Client) -> None:
    statuses = client.get("/v1/models/adder").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in statuses] == [("3", "AVAILABLE"), ("2", "AVAILABLE")]


def test_failed_model_status_reports_the_error(client: httpx.Client) -> None:
    (status,) = client.get("/v1/models/pickled").json()["model_version_status"]
    assert status["state"] == "END"
    assert status["status"]["error_code"] != "OK"
    assert "trusted: true" in status["status"]["error_message"]


def test_columnar_format_and_single_output_regressor(client: httpx.Client, repo) -> None:
    x = np.linspace(-0.1, 0.1, 20).reshape(2, 10)
    rows = client.post("/v1/models/diabetes:predict", json={"instances": x.tolist()}).json()
    columns = client.post("/v1/models/diabetes:predict", json={"inputs": x.tolist()}).json()
    expected = sio.load(repo / "diabetes" / "1" / "model.skops").predict(x)
    np.testing.assert_allclose(rows["predictions"], expected, rtol=1e-12)
    np.testing.assert_allclose(columns["outputs"], expected, rtol=1e-12)


def test_columnar_two_outputs(client: httpx.Client) -> None:
    outputs = client.post("/v1/models/iris:predict", json={"inputs": IRIS}).json()["outputs"]
    assert outputs["label"] == [0, 2]
    assert np.array(outputs["probabilities"]).shape == (2, 3)


def test_version_routing_on_v1(client: httpx.Client) -> None:
    response = client.post("/v1/models/adder/versions/2:predict", json={"instances": [[1, 1, 1]]}).json()
    assert response == {"predictions": [[3.0, 3.0, 3.0]]}
    assert client.get("/v1/models/adder/versions/1").status_code == 404
