"""Every runtime answers exactly what its native library answers in-process, through the server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import joblib
import numpy as np
import onnxruntime as ort
import pytest
import skops.io as sio

RNG = np.random.default_rng(7)
IRIS_X = RNG.uniform(0.1, 7.9, size=(16, 4))
DIABETES_X = RNG.normal(0, 0.05, size=(16, 10))


def _onnx(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"input": x.astype(np.float32)})
    return {"label": label, "probabilities": proba}


def _sklearn(load: Callable[[Path], object]) -> Callable[[Path, np.ndarray], dict[str, np.ndarray]]:
    def run(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
        model = load(path)
        out = {"label": model.predict(x)}  # type: ignore[attr-defined]
        if hasattr(model, "predict_proba"):
            out["probabilities"] = model.predict_proba(x)
        return out

    return run


CASES = [
    ("iris", "model.onnx", "FP32", IRIS_X, _onnx),
    ("iris-skops", "model.skops", "FP64", IRIS_X, _sklearn(sio.load)),
    ("diabetes", "model.skops", "FP64", DIABETES_X, _sklearn(sio.load)),
    ("pickled-trusted", "model.joblib", "FP64", IRIS_X, _sklearn(joblib.load)),
]


@pytest.mark.parametrize(("model", "artifact", "datatype", "x", "native"), CASES, ids=[c[0] for c in CASES])
def test_server_equals_native_library(
    client: httpx.Client, repo: Path, model: str, artifact: str, datatype: str, x: np.ndarray, native
) -> None:
    x = x.astype(np.float32 if datatype == "FP32" else np.float64)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}]}
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    served = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}
    expected = native(repo / model / "1" / artifact, x)
    assert served.keys() == expected.keys()
    for name, value in expected.items():
        # JSON carries floats as shortest round-trip text, so equality is exact
        np.testing.assert_array_equal(served[name].astype(value.dtype), value, err_msg=name)


@pytest.mark.parametrize(("model", "artifact", "datatype", "x", "native"), CASES, ids=[c[0] for c in CASES])
def test_empty_batch_gives_empty_outputs(
    client: httpx.Client, model: str, artifact: str, datatype: str, x: np.ndarray, native
) -> None:
    width = x.shape[1]
    body = {"inputs": [{"name": "input", "shape": [0, width], "datatype": datatype, "data": []}]}
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["label"]["shape"][0] == 0 and outputs["label"]["data"] == []
    if "probabilities" in outputs:
        assert outputs["probabilities"]["shape"] == [0, 3]
