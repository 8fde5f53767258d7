"""Model files are untrusted input: a bad one fails its own version, names why, and harms nothing else.

One real server over one repository holding, beside a good model of every installed format:

- ONNX models whose external data lies inside the version directory (served) or escapes it by an
  absolute path, ``..``, a symlink, or onnxruntime's in-memory marker (FAILED, naming the file and
  the location);
- TensorFlow SavedModels whose asset lies in ``assets/`` (served) or is named by an absolute path
  or ``..`` pointing at a local secret (FAILED; the secret never appears in a response);
- PMML documents that declare external entities reading a local secret (FAILED; the secret never
  appears in a response);
- for every format, a truncated, a random and an empty artifact (FAILED, naming the file or the
  format), while every good model keeps answering what its own library answers in-process.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelserve import testing
from modelserve.config.model import load_model_config
from modelserve.runtimes.registry import resolve
from modelserve.types import datatype_of
from tests.fixtures.models import build_examples, iris_classifier
from tests.fixtures.runtime_cases import RuntimeCase, all_cases

# the example models that the corrupt copies start from: the first conformance case of each
# platform, plus those whose artifact is another file type (XGBoost's JSON beside its UBJSON)
OTHER_FILE_TYPES = frozenset({"xgboost-diabetes"})
BASES: dict[str, RuntimeCase] = {}
for _case in all_cases():
    BASES.setdefault(_case.model if _case.model in OTHER_FILE_TYPES else _case.platform, _case)
# trusted pickles are scikit-learn models too, in two more files
PICKLES = {"sklearn-joblib": "model.joblib", "sklearn-pickle": "model.pkl"}
CORRUPTIONS = ("truncated", "random", "empty")
SECRET = "TOP-SECRET-5f1c9e2a-never-served"
WEIGHTS = np.array([0.5, 1.5, 2.5], dtype=np.float32)
# ONNX models whose external data escapes the version directory, by the way each one escapes
ESCAPES = ("absolute", "dotdot", "symlink", "memory-marker")
# PMML documents that try to read the secret: an inline external entity, an external DTD
# SavedModels whose asset names escape assets/ (TensorFlow alone would read the secret)
HAS_TF = importlib.util.find_spec("tensorflow") is not None
TF_ESCAPES = ("absolute", "dotdot") if HAS_TF else ()
ASSET_TEXT = "an asset inside the version directory"
XXE = {
    "pmml-xxe-entity": '<!DOCTYPE PMML [<!ENTITY xxe SYSTEM "file://{secret}">]>',
    "pmml-xxe-dtd": '<!DOCTYPE PMML SYSTEM "file://{secret}">',
}


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outside") / "secret.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, secret: Path) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    build_examples(out)
    keep = {case.model for case in BASES.values()}
    for model in [p for p in out.iterdir() if p.is_dir() and p.name not in keep and not p.name.startswith(".")]:
        shutil.rmtree(model)
    for name in ("canary.yaml",):
        (out / name).unlink(missing_ok=True)
    _pickles(out)
    for model in [*(c.model for c in BASES.values()), *PICKLES]:
        for kind in CORRUPTIONS:
            _corrupt_copy(out, model, kind)
    _onnx_external(out, secret.parent)
    _pmml_xxe(out, secret)
    if HAS_TF:
        _tf_assets(out, secret)
    return out


@pytest.fixture(scope="module")
def client(repo: Path) -> Iterator[httpx.Client]:
    with testing.run(repo, trust_code=True) as srv, httpx.Client(base_url=srv.http_url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def index(client: httpx.Client) -> dict[str, dict[str, Any]]:
    rows = client.post("/v2/repository/index", json={}).json()
    return {row["name"]: row for row in rows}


# --- ONNX external data ------------------------------------------------------------------------


def test_external_data_inside_the_version_directory_serves(client: httpx.Client, index: dict[str, Any]) -> None:
    assert index["onnx-external"]["state"] == "READY", index["onnx-external"]
    x = [[1.0, 1.0, 1.0], [0.0, -1.0, 2.0]]
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": x}]}
    response = client.post("/v2/models/onnx-external/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == (np.array(x, dtype=np.float32) + WEIGHTS).ravel().tolist()


@pytest.mark.parametrize("escape", ESCAPES)
def test_external_data_outside_the_version_directory_fails(
    client: httpx.Client, index: dict[str, Any], repo: Path, escape: str
) -> None:
    name = f"onnx-external-{escape}"
    row = index[name]
    location = (repo / name / "location.txt").read_text()
    assert row["state"] == "FAILED", row
    assert "model.onnx" in row["reason"] and repr(location) in row["reason"] and "'w'" in row["reason"], row
    assert client.get(f"/v2/models/{name}/ready").status_code == 503
    assert client.post(f"/v2/models/{name}/infer", json={}).status_code in (400, 503)
    _iris_still_serves(client)


@pytest.mark.skipif(not HAS_TF, reason="tensorflow is not installed")
def test_savedmodel_asset_inside_assets_serves(client: httpx.Client, index: dict[str, Any]) -> None:
    assert index["tf-asset"]["state"] == "READY", index["tf-asset"]
    served = _infer(client, "tf-asset", {"x": np.array([1.0, 2.0], dtype=np.float32)})
    assert [_text(v) for v in served["text"]] == [ASSET_TEXT] * 2


@pytest.mark.parametrize("escape", TF_ESCAPES)
def test_savedmodel_asset_outside_assets_fails_and_never_shows_the_secret(
    client: httpx.Client, index: dict[str, Any], repo: Path, escape: str
) -> None:
    name = f"tf-asset-{escape}"
    row, location = index[name], (repo / name / "location.txt").read_text()
    assert row["state"] == "FAILED", row
    assert "saved_model.pb" in row["reason"] and repr(location) in row["reason"], row
    response = client.post(f"/v2/models/{name}/infer", json={"inputs": [_json_tensor("x", np.ones(1, np.float32))]})
    assert response.status_code == 503 and SECRET not in response.text


# --- PMML external entities ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(XXE))
def test_pmml_with_external_entities_fails_and_never_shows_the_secret(
    client: httpx.Client, index: dict[str, Any], name: str
) -> None:
    row = index[name]
    assert row["state"] == "FAILED", row
    assert "model.pmml" in row["reason"] and "DOCTYPE" in row["reason"], row
    request = {"inputs": [{"name": f, "datatype": "FP64", "shape": [1], "data": [1.0]} for f in _IRIS_FIELDS]}
    responses = [
        client.post("/v2/repository/index", json={}),
        client.get(f"/v2/models/{name}"),
        client.get(f"/v2/models/{name}/ready"),
        client.post(f"/v2/models/{name}/infer", json=request),
        client.get(f"/v1/models/{name}"),
    ]
    for response in responses:
        assert SECRET not in response.text, response.request.url
    assert index[BASES["pmml"].model]["state"] == "READY"


_IRIS_FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


# --- corrupt artifacts -------------------------------------------------------------------------

CORRUPT_MODELS = [f"{m}-{k}" for m in [*(c.model for c in BASES.values()), *PICKLES] for k in CORRUPTIONS]


@pytest.mark.parametrize("name", CORRUPT_MODELS)
def test_corrupt_artifact_fails_naming_the_file(
    client: httpx.Client, index: dict[str, Any], repo: Path, name: str
) -> None:
    row = index[name]
    artifact = (repo / name / "artifact.txt").read_text()
    assert row["state"] == "FAILED", row
    platform = next((c.platform for c in BASES.values() if name.startswith(c.model + "-")), "sklearn")
    assert artifact in row["reason"] or platform in row["reason"].lower(), row
    assert client.get(f"/v2/models/{name}/ready").status_code == 503


@pytest.mark.parametrize("case", list(BASES.values()), ids=str)
def test_every_good_model_still_answers_as_its_library_does(
    client: httpx.Client, repo: Path, case: RuntimeCase
) -> None:
    inputs = case.inputs(5)
    expected = case.native(repo / case.model / "1", inputs)
    served = _infer(client, case.model, inputs)
    assert served.keys() == expected.keys()
    for name, value in expected.items():
        value = np.asarray(value)
        got = served[name]
        if value.dtype.kind in "OSU":
            assert [_text(v) for v in got.ravel()] == [_text(v) for v in value.ravel()], name
        elif name in case.exact:
            np.testing.assert_array_equal(got.astype(value.dtype), value, err_msg=name)
        else:
            np.testing.assert_allclose(got.astype(np.float64), value.astype(np.float64), rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("model", sorted(PICKLES))
def test_trusted_pickles_answer_as_the_estimator_does(client: httpx.Client, model: str) -> None:
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    served = _infer(client, model, {"input": x})
    estimator = iris_classifier()
    np.testing.assert_array_equal(served["label"], estimator.predict(x))
    np.testing.assert_allclose(served["probabilities"], estimator.predict_proba(x), rtol=1e-6)


def test_the_server_is_alive_after_every_failure(client: httpx.Client, index: dict[str, Any]) -> None:
    assert client.get("/v2/health/live").status_code == 200
    failed = {name for name, row in index.items() if row["state"] == "FAILED"}
    expected = {*CORRUPT_MODELS, *(f"onnx-external-{e}" for e in ESCAPES), *XXE, *(f"tf-asset-{e}" for e in TF_ESCAPES)}
    assert failed == expected
    _iris_still_serves(client)


# --- helpers ---------------------------------------------------------------------------------


def _iris_still_serves(client: httpx.Client) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [0]


def _infer(client: httpx.Client, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    body = {"inputs": [_json_tensor(name, array) for name, array in inputs.items()]}
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


def _json_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    data = [_text(v) for v in array.ravel()] if array.dtype.kind in "OSU" else array.ravel().tolist()
    return {"name": name, "datatype": datatype_of(array), "shape": list(array.shape), "data": data}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pickles(out: Path) -> None:
    estimator = iris_classifier()
    for model, file in PICKLES.items():
        (out / model / "1").mkdir(parents=True)
        (out / model / "config.yaml").write_text(
            "trusted: true\nsignature: {outputs: [{name: label}, {name: probabilities}]}\n"
        )
        path = out / model / "1" / file
        if file.endswith(".joblib"):
            joblib.dump(estimator, path)
        else:
            path.write_bytes(pickle.dumps(estimator))


def _corrupt_copy(out: Path, model: str, kind: str) -> None:
    """``<model>-<kind>``: the model with its artifact truncated to half, random bytes, or empty."""
    target = out / f"{model}-{kind}"
    shutil.copytree(out / model, target)
    artifact = resolve(target / "1", load_model_config(target / "config.yaml")).artifact
    data = artifact.read_bytes()
    corrupt = {
        "truncated": data[: len(data) // 2],
        "random": random.Random(f"{model}-{kind}").randbytes(max(64, min(len(data), 4096))),
        "empty": b"",
    }[kind]
    artifact.write_bytes(corrupt)
    (target / "artifact.txt").write_text(artifact.name)


def _onnx_external(out: Path, outside: Path) -> None:
    """``onnx-external``: y = x + w, w in weights/w.bin; ``onnx-external-<escape>``: w elsewhere."""
    (outside / "w.bin").write_bytes(WEIGHTS.tobytes())
    good = out / "onnx-external" / "1"
    (good / "weights").mkdir(parents=True)
    (good / "weights" / "w.bin").write_bytes(WEIGHTS.tobytes())
    _write_onnx(good / "model.onnx", "weights/w.bin")
    for escape in ESCAPES:
        version_dir = out / f"onnx-external-{escape}" / "1"
        version_dir.mkdir(parents=True)
        if escape == "absolute":
            location = str(outside / "w.bin")
        elif escape == "dotdot":
            location = os.path.relpath(outside / "w.bin", version_dir)
        elif escape == "symlink":
            location = "w.bin"
            (version_dir / location).symlink_to(outside / "w.bin")
        else:  # a real file by that name, so that only the marker's refusal stops it
            location = "*/_ORT_MEM_ADDR_/*"
            (version_dir / "*" / "_ORT_MEM_ADDR_").mkdir(parents=True)
            (version_dir / location).write_bytes(WEIGHTS.tobytes())
        _write_onnx(version_dir / "model.onnx", location)
        (version_dir.parent / "location.txt").write_text(location)


def _write_onnx(path: Path, location: str) -> None:
    weights = numpy_helper.from_array(WEIGHTS, "w")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(WEIGHTS.nbytes))):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def _pmml_xxe(out: Path, secret: Path) -> None:
    """The example PMML with a DOCTYPE that names the secret; the entity is used in an Annotation."""
    text = (out / BASES["pmml"].model / "1" / "model.pmml").read_text()
    head, _, body = text.partition("\n")  # the XML declaration, then the document
    for name, doctype in XXE.items():
        (out / name / "1").mkdir(parents=True)
        if "ENTITY" in doctype:
            body = body.replace("<Application ", "<Annotation>&xxe;</Annotation><Application ", 1)
        (out / name / "1" / "model.pmml").write_text(f"{head}\n{doctype.format(secret=secret)}\n{body}")


def _tf_assets(out: Path, secret: Path) -> None:
    """``tf-asset``: a SavedModel that returns its asset file's text; ``tf-asset-<escape>``: the
    same with the asset's name in saved_model.pb pointing at the secret."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    source = out / "tf-asset.txt"
    source.write_text(ASSET_TEXT)

    class Reader(tf.Module):
        def __init__(self) -> None:
            self.asset = tf.saved_model.Asset(str(source))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def serve(self, x: Any) -> Any:
            return {"text": tf.fill(tf.shape(x), tf.io.read_file(self.asset))}

    module = Reader()
    tf.saved_model.save(module, str(out / "tf-asset" / "1"), signatures={"serving_default": module.serve})
    source.unlink()
    for escape in TF_ESCAPES:
        target = out / f"tf-asset-{escape}"
        shutil.copytree(out / "tf-asset", target)
        graph = target / "1" / "saved_model.pb"
        location = str(secret) if escape == "absolute" else os.path.relpath(secret, target / "1" / "assets")
        proto = saved_model_pb2.SavedModel.FromString(graph.read_bytes())
        for meta in proto.meta_graphs:
            for asset in meta.asset_file_def:
                asset.filename = location
        graph.write_bytes(proto.SerializeToString())
        (target / "location.txt").write_text(location)
