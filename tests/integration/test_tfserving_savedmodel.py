"""modelserve as a drop-in for TF Serving: a SavedModel in TF Serving's layout, spoken to through
TF Serving's REST API, with signature selection; and ``signature_name`` on the v2 APIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from modelserve import testing

tf = pytest.importorskip("tensorflow")

IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="module")
def signatures(repo: Path) -> Any:
    return tf.saved_model.load(str(repo / "tf-iris" / "1")).signatures


def native(signatures: Any, name: str, rows: list[list[float]] = IRIS) -> dict[str, np.ndarray]:
    results = signatures[name](features=tf.constant(np.array(rows, dtype=np.float32)))
    return {key: value.numpy() for key, value in results.items()}


def test_base_path_layout_is_tf_servings(repo: Path) -> None:
    version = repo / "tf-iris" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables" / "variables.index").is_file()


def test_metadata_lists_every_signature(client: httpx.Client) -> None:
    meta = client.get("/v1/models/tf-iris/metadata").json()
    assert meta["model_spec"] == {"name": "tf-iris", "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert list(defs) == ["serving_default", "predict_logits"]
    default = defs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["features"]["dtype"] == "DT_FLOAT"
    assert default["inputs"]["features"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "4", "name": ""},
    ]
    assert {name: t["dtype"] for name, t in default["outputs"].items()} == {
        "class_ids": "DT_INT64",
        "probabilities": "DT_FLOAT",
    }
    assert list(defs["predict_logits"]["outputs"]) == ["logits"]
    v2 = client.get("/v2/models/tf-iris").json()
    assert v2["platform"] == "tensorflow_savedmodel" and [o["name"] for o in v2["outputs"]] == [
        "class_ids",
        "probabilities",
    ]


@pytest.mark.parametrize("signature_name", [None, "", "serving_default"])
def test_row_format_on_the_default_signature(client: httpx.Client, signatures: Any, signature_name: str | None) -> None:
    body: dict[str, Any] = {"instances": IRIS}
    if signature_name is not None:
        body["signature_name"] = signature_name
    response = client.post("/v1/models/tf-iris:predict", json=body)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = native(signatures, "serving_default")
    assert [p["class_ids"] for p in predictions] == expected["class_ids"].tolist() == [0, 2, 1]
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected["probabilities"], rtol=1e-6)


def test_columnar_format(client: httpx.Client, signatures: Any) -> None:
    response = client.post("/v1/models/tf-iris/versions/1:predict", json={"inputs": {"features": IRIS}})
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    expected = native(signatures, "serving_default")
    assert outputs["class_ids"] == expected["class_ids"].tolist()
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)


@pytest.mark.parametrize("body_key", ["instances", "inputs"])
def test_another_signature_by_name(client: httpx.Client, signatures: Any, body_key: str) -> None:
    body = {"signature_name": "predict_logits", body_key: IRIS}
    response = client.post("/v1/models/tf-iris:predict", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    logits = doc["predictions"] if body_key == "instances" else doc["outputs"]  # one output: bare values
    np.testing.assert_allclose(logits, native(signatures, "predict_logits")["logits"], rtol=1e-6)


def test_unknown_signature_names_the_available_ones(client: httpx.Client) -> None:
    response = client.post("/v1/models/tf-iris:predict", json={"signature_name": "nope", "instances": IRIS})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "'nope'" in error and "'serving_default'" in error and "'predict_logits'" in error


def test_two_named_inputs_in_row_format(client: httpx.Client) -> None:
    instances = [{"x": [1.0, 0.0], "word": "héllo"}, {"x": [0.0, 1.0], "word": ""}]
    response = client.post("/v1/models/tf-scorer:predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert (first["label"], first["length"], first["positive"]) == ("positive", 5, True)
    assert (second["label"], second["length"], second["positive"]) == ("negative", 0, False)
    np.testing.assert_allclose([first["score"], second["score"]], [2.0, -2.0])


def _v2_body(signature_name: object = None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [3, 4], "data": IRIS}]}
    if signature_name is not None:
        body["parameters"] = {"signature_name": signature_name}
    return body


def test_v2_rest_signature_name(client: httpx.Client, signatures: Any) -> None:
    response = client.post("/v2/models/tf-iris/infer", json=_v2_body("predict_logits"))
    assert response.status_code == 200, response.text
    (logits,) = response.json()["outputs"]
    assert logits["name"] == "logits" and logits["shape"] == [3, 3]
    np.testing.assert_allclose(np.reshape(logits["data"], (3, 3)), native(signatures, "predict_logits")["logits"])
    default = client.post("/v2/models/tf-iris/infer", json=_v2_body("")).json()
    assert [o["name"] for o in default["outputs"]] == ["class_ids", "probabilities"]


@pytest.mark.parametrize(
    ("model", "signature_name", "expected"),
    [
        ("tf-iris", "nope", ["'nope'", "['serving_default', 'predict_logits']"]),
        ("tf-iris", 3, ["must be a string", "3"]),
        ("iris", "predict_logits", ["'predict_logits'", "['serving_default']"]),  # one signature (ONNX)
    ],
)
def test_v2_rest_bad_signature_name(
    client: httpx.Client, model: str, signature_name: object, expected: list[str]
) -> None:
    body = _v2_body(signature_name)
    if model == "iris":
        body["inputs"][0]["name"] = "input"
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 400, response.text
    assert all(part in response.json()["error"] for part in expected), response.json()["error"]


def test_v2_rest_default_name_on_a_single_signature_model(client: httpx.Client) -> None:
    body = _v2_body("serving_default")
    body["inputs"][0]["name"] = "input"
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200, response.text


@pytest.fixture
def triton(server: testing.run) -> Iterator[tg.InferenceServerClient]:
    client = tg.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


def test_v2_grpc_signature_name(triton: tg.InferenceServerClient, signatures: Any) -> None:
    x = np.array(IRIS, dtype=np.float32)
    tensor = tg.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = triton.infer("tf-iris", [tensor], parameters={"signature_name": "predict_logits"})
    np.testing.assert_allclose(result.as_numpy("logits"), native(signatures, "predict_logits")["logits"])
    with pytest.raises(InferenceServerException, match=r"INVALID_ARGUMENT.*'nope' not found"):
        triton.infer("tf-iris", [tensor], parameters={"signature_name": "nope"})
