"""Embedded use: ``modelserve.load`` answers as the server does, for an ONNX and a scikit-learn
model, given a dict of arrays, one array or a DataFrame; bad inputs raise the server's messages."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

import modelserve
from modelserve import testing
from modelserve.errors import ConfigError, InvalidInput

ROWS = load_iris().data[::7]


def served(client: httpx.Client, name: str, x: np.ndarray, datatype: str) -> dict[str, np.ndarray]:
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}]}
    reply = client.post(f"/v2/models/{name}/infer", json=body)
    assert reply.status_code == 200, reply.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in reply.json()["outputs"]}


@pytest.mark.parametrize(("name", "datatype"), [("iris", "FP32"), ("iris-skops", "FP64")])
def test_embedded_equals_served(server: testing.run, repo: Path, name: str, datatype: str) -> None:
    x = ROWS.astype(np.float32 if datatype == "FP32" else np.float64)
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        want = served(client, name, x, datatype)
    with modelserve.load(repo / name) as model:
        assert model.signature.inputs[0].name == "input"
        for given in ({"input": x}, x, pd.DataFrame(x, columns=["a", "b", "c", "d"])):
            got = model.predict(given)
            assert list(got) == list(want)
            for out, values in want.items():
                np.testing.assert_allclose(got[out], values, rtol=1e-6)


def test_embedded_outputs_and_version_dir(repo: Path) -> None:
    with modelserve.load(repo / "iris" / "1") as model:
        assert (model.name, model.version) == ("iris", 1)
        assert model.metadata["platform"] == "onnxruntime_onnx"
        assert list(model.predict(ROWS, outputs=["probabilities"])) == ["probabilities"]


def test_embedded_bad_input_names_it(repo: Path) -> None:
    model = modelserve.load(repo / "iris")
    with pytest.raises(InvalidInput, match=r"input 'input' of model 'iris' version 1: got shape \[3, 3\]"):
        model.predict(np.zeros((3, 3)))
    with pytest.raises(InvalidInput, match="has no input 'x'"):
        model.predict({"x": np.zeros((1, 4))})
    model.close()
    with pytest.raises(Exception, match="closed"):
        model.predict(ROWS)


def test_registry_ref_needs_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELSERVE_REPOSITORY", raising=False)
    with pytest.raises(ConfigError, match="MODELSERVE_REPOSITORY"):
        modelserve.load("registry:iris@production")
