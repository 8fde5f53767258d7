"""Explanations through the real server: ``POST /v2/models/{m}/explain`` and ``/v1/models/{m}:explain``.

Tree models are explained by shap's TreeExplainer (attributions add up to the prediction, an unused
feature gets 0); other models by the exact/permutation explainers over a reference sample wired in
through bootstrap (a real array of training rows), with the same additivity. Bad input, too many
rows and a missing reference profile are 400s; a tiny timeout is a 504; and /infer keeps
answering quickly while an explanation runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import skops.io as sio
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression

from modelserve import bootstrap, testing
from modelserve.monitoring.explain import Explainer
from tests.fixtures.models import _save_onnx, reshape_model

FEATURES = ["a", "b", "c", "noise", "const"]
WIDE = 10  # features of the "wide" model: the exact explainer's largest case, slow enough to watch


def _forest_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    x[:, 4] = 1.0  # a constant: no tree can split on it
    y = 3 * x[:, 0] - 2 * x[:, 1] + x[:, 0] * x[:, 2]
    return x, y


def _wide_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, WIDE))
    return x, (x[:, 0] + x[:, 1] - x[:, 2] > 0).astype(np.int64)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("explain")
    x, y = _forest_data()
    regressor = RandomForestRegressor(n_estimators=25, max_depth=6, random_state=0).fit(x, y)
    classifier = RandomForestClassifier(n_estimators=25, max_depth=5, random_state=0).fit(x, np.digitize(y, [-2, 2]))
    boosted = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y > 0)
    wx, wy = _wide_data()
    wide = LogisticRegression(max_iter=1000).fit(wx, wy)
    iris = load_iris()
    logistic = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    onnx_model = to_onnx(
        logistic,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(logistic): {"zipmap": False}},
        target_opset=17,
    )
    for name, model in (("forest", regressor), ("forest-clf", classifier), ("boosted", boosted), ("wide", wide)):
        (root / name / "1").mkdir(parents=True)
        sio.dump(model, root / name / "1" / "model.skops")
        trusted = sio.get_untrusted_types(file=root / name / "1" / "model.skops")  # sklearn's Tree: we built it
        metadata = f"metadata: {{feature_names: {FEATURES}}}\n" if name == "forest" else ""
        (root / name / "config.yaml").write_text(f"trusted_types: {trusted}\n{metadata}")
    for name in ("iris", "iris-unprofiled"):
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.onnx").write_bytes(onnx_model.SerializeToString())
    _save_onnx(root / "reshaper" / "1" / "model.onnx", reshape_model())
    backgrounds = {"iris": iris.data[::3], "boosted": x[::4], "wide": wx[::3]}  # rows of the training data
    return {
        "root": root,
        "regressor": regressor,
        "classifier": classifier,
        "boosted": boosted,
        "wide": wide,
        "backgrounds": backgrounds,
        "x": x,
        "wx": wx,
        "iris": iris.data,
    }


@pytest.fixture(scope="module")
def explainers() -> list[Explainer]:
    return []


@pytest.fixture(scope="module")
def server(models: dict[str, Any], explainers: list[Explainer]) -> Iterator[testing.run]:
    """The real server, its Explainer given the reference samples above (the bootstrap hook a
    reference-profile store plugs into), and kept at hand to change its limits."""
    backgrounds = models["backgrounds"]

    def explainer(manager: Any, *args: Any, **kwargs: Any) -> Explainer:
        made = Explainer(manager, *args, **{**kwargs, "background": lambda name, version: backgrounds.get(name)})
        explainers.append(made)
        return made

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bootstrap, "Explainer", explainer)
        srv = testing.run(models["root"], inference_threads=2)
    with srv:
        yield srv


@pytest.fixture
def client(server: testing.run) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=120) as c:
        yield c


def _v2(rows: np.ndarray, datatype: str = "FP64", **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "input", "datatype": datatype, "shape": list(rows.shape), "data": rows.ravel().tolist()}]
    }
    if parameters:
        body["parameters"] = parameters
    return body


def _served(client: httpx.Client, model: str, rows: np.ndarray, output: str, datatype: str = "FP64") -> np.ndarray:
    r = client.post(f"/v2/models/{model}/infer", json=_v2(rows, datatype))
    assert r.status_code == 200, r.text
    (out,) = [o for o in r.json()["outputs"] if o["name"] == output]
    return np.array(out["data"], np.float64).reshape(out["shape"])


def test_tree_regressor_adds_up_and_ignores_the_constant(client: httpx.Client, models: dict[str, Any]) -> None:
    rows = models["x"][:7]
    r = client.post("/v2/models/forest/explain", json=_v2(rows))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"model_name", "model_version", "explainer", "output", "features", "base_values",
                        "attributions", "seconds"}  # fmt: skip
    assert [doc[k] for k in ("model_name", "model_version", "explainer", "output")] == ["forest", "1", "tree", "label"]
    assert doc["features"] == FEATURES and doc["seconds"] > 0
    phi = np.array(doc["attributions"])
    assert phi.shape == (7, 5) and len(doc["base_values"]) == 1
    predicted = models["regressor"].predict(rows)
    np.testing.assert_allclose(phi.sum(axis=1) + doc["base_values"][0], predicted, rtol=1e-6)
    np.testing.assert_allclose(predicted, _served(client, "forest", rows, "label"), rtol=1e-12)
    assert np.all(phi[:, 4] == 0)  # the constant feature
    assert np.abs(phi[:, 0]).mean() > 0.5  # the strongest one matters


def test_tree_classifier_explains_each_class_probability(client: httpx.Client, models: dict[str, Any]) -> None:
    rows = models["x"][10:14]
    doc = client.post("/v2/models/forest-clf/explain", json=_v2(rows)).json()
    assert (doc["explainer"], doc["output"]) == ("tree", "probabilities")
    phi = np.array(doc["attributions"])
    assert phi.shape == (4, 3, 5) and len(doc["base_values"]) == 3
    expected = models["classifier"].predict_proba(rows)
    np.testing.assert_allclose(phi.sum(axis=2) + np.array(doc["base_values"]), expected, rtol=1e-6, atol=1e-12)
    assert np.all(phi[:, :, 4] == 0)


def test_kernel_onnx_with_reference_sample_adds_up(client: httpx.Client, models: dict[str, Any]) -> None:
    rows = models["iris"][[0, 60, 120]].astype(np.float32)
    r = client.post("/v2/models/iris/explain", json=_v2(rows, "FP32"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["explainer"], doc["output"]) == ("exact", "probabilities")
    assert doc["features"] == ["input[0]", "input[1]", "input[2]", "input[3]"]
    phi, base = np.array(doc["attributions"]), np.array(doc["base_values"])
    assert phi.shape == (3, 3, 4)
    served = _served(client, "iris", rows, "probabilities", "FP32")
    np.testing.assert_allclose(phi.sum(axis=2) + base, served, atol=1e-6)
    background = _served(client, "iris", models["backgrounds"]["iris"].astype(np.float32), "probabilities", "FP32")
    np.testing.assert_allclose(base, background.mean(axis=0), atol=1e-6)  # the base is E[f(background)]
    assert np.abs(phi[:, :, 2:]).sum() > np.abs(phi[:, :, :2]).sum()  # the petals tell iris classes apart


def test_boosted_classifier_is_explained_in_its_output_units(client: httpx.Client, models: dict[str, Any]) -> None:
    """shap's tree values for gradient boosting are log-odds; the served output is a probability,
    so the explainer goes model-agnostic (with the reference sample) and still adds up."""
    rows = models["x"][:3]
    doc = client.post("/v2/models/boosted/explain", json=_v2(rows)).json()
    assert (doc["explainer"], doc["output"]) == ("exact", "probabilities")
    phi = np.array(doc["attributions"])
    expected = models["boosted"].predict_proba(rows)
    np.testing.assert_allclose(phi.sum(axis=2) + np.array(doc["base_values"]), expected, atol=1e-9)
    assert np.abs(phi[:, :, 4]).max() < 1e-12  # the constant is the same in every reference row


def test_v1_explain(client: httpx.Client, models: dict[str, Any]) -> None:
    rows = models["x"][:3]
    v2 = client.post("/v2/models/forest/explain", json=_v2(rows)).json()
    for path in ("/v1/models/forest:explain", "/v1/models/forest/versions/1:explain"):
        r = client.post(path, json={"instances": rows.tolist()})
        assert r.status_code == 200, r.text
        assert r.json()["attributions"] == v2["attributions"] and r.json()["explainer"] == "tree"
    columnar = client.post("/v1/models/forest-clf:explain", json={"inputs": rows.tolist(), "output": "probabilities"})
    assert columnar.status_code == 200 and np.array(columnar.json()["attributions"]).shape == (3, 3, 5)
    assert client.post("/v1/models/forest:classify", json={"instances": rows.tolist()}).status_code == 501
    assert client.get("/v1/models/forest:explain").status_code == 405


def test_bad_requests_are_400s(client: httpx.Client, models: dict[str, Any]) -> None:
    x = models["x"]
    r = client.post("/v2/models/forest/explain", json=_v2(x[:2, :3]))
    assert r.status_code == 400 and "input 'input'" in r.json()["error"] and "[2, 3]" in r.json()["error"]
    body = _v2(x[:2])
    body["inputs"][0]["name"] = "features"
    r = client.post("/v2/models/forest/explain", json=body)
    assert r.status_code == 400 and "'features'" in r.json()["error"]
    r = client.post("/v2/models/forest/explain", json=_v2(np.tile(x[:1], (101, 1))))
    assert r.status_code == 400 and "101 rows" in r.json()["error"] and "max_rows" in r.json()["error"]
    r = client.post("/v2/models/forest-clf/explain", json=_v2(x[:2], output="nope"))
    assert r.status_code == 400 and "'nope'" in r.json()["error"]
    r = client.post("/v2/models/reshaper/explain", json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [4],
                                                                       "data": [1, 2, 3, 4]}]})  # fmt: skip
    assert r.status_code == 400 and "tabular" in r.json()["error"]
    assert client.post("/v2/models/nope/explain", json=_v2(x[:1])).status_code == 404


def test_no_tree_and_no_reference_profile_is_a_400(client: httpx.Client, models: dict[str, Any]) -> None:
    rows = models["iris"][:2].astype(np.float32)
    r = client.post("/v2/models/iris-unprofiled/explain", json=_v2(rows, "FP32"))
    assert r.status_code == 400, r.text
    assert "modelserve monitor profile --model iris-unprofiled" in r.json()["error"]
    assert "no reference profile" in r.json()["error"]


def _explain_while_inferring(client: httpx.Client, models: dict[str, Any]) -> tuple[httpx.Response, list[float]]:
    """Explain 100 rows of ``wide`` (exact: ~10 million model rows) while /infer asks the same model
    for one row at a time; the explanation's answer, and each /infer's latency."""
    rows = models["wx"][:100]
    one = _v2(models["wx"][:1])
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=str(client.base_url), timeout=120) as other:
        pending = pool.submit(other.post, "/v2/models/wide/explain", json=_v2(rows))
        latencies = []
        while not pending.done():
            started = time.perf_counter()
            assert client.post("/v2/models/wide/infer", json=one).status_code == 200
            latencies.append(time.perf_counter() - started)
        return pending.result(), latencies


def test_inference_is_not_blocked_by_a_long_explanation(client: httpx.Client, models: dict[str, Any]) -> None:
    client.post("/v2/models/wide/explain", json=_v2(models["wx"][:1]))  # shap's first use compiles (numba)
    r, latencies = _explain_while_inferring(client, models)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["explainer"] == "exact" and doc["seconds"] > 0.5
    phi = np.array(doc["attributions"])
    np.testing.assert_allclose(
        phi.sum(axis=2) + doc["base_values"], models["wide"].predict_proba(models["wx"][:100]), atol=1e-9
    )
    assert len(latencies) >= 10, latencies
    assert np.median(latencies) < 0.05 and max(latencies) < 0.5, (doc["seconds"], sorted(latencies)[-5:])


def test_a_tiny_timeout_is_a_504_and_the_server_keeps_serving(
    client: httpx.Client, models: dict[str, Any], explainers: list[Explainer]
) -> None:
    (explainer,) = explainers
    explainer.timeout_s = 0.3
    try:
        r, latencies = _explain_while_inferring(client, models)
    finally:
        explainer.timeout_s = 30.0
    assert r.status_code == 504, r.text
    assert "0.3 s" in r.json()["error"] and "explain timeout" in r.json()["error"]
    assert latencies and max(latencies) < 0.5
    # the stopped explanation lets go of its turn: the next one runs
    r = client.post("/v2/models/forest/explain", json=_v2(models["x"][:1]))
    assert r.status_code == 200 and r.json()["explainer"] == "tree"


def test_too_many_waiting_is_a_429(client: httpx.Client, models: dict[str, Any], explainers: list[Explainer]) -> None:
    (explainer,) = explainers
    explainer.max_waiting = 0
    try:
        with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=str(client.base_url), timeout=120) as other:
            pending = pool.submit(other.post, "/v2/models/wide/explain", json=_v2(models["wx"][:100]))
            deadline = time.monotonic() + 30
            while not explainer.busy and not pending.done() and time.monotonic() < deadline:
                time.sleep(0.005)  # polling the explainer's state, not waiting for readiness blindly
            r = client.post("/v2/models/forest/explain", json=_v2(models["x"][:1]))
            assert pending.result().status_code == 200
    finally:
        explainer.max_waiting = 4
    assert r.status_code == 429 and "retry later" in r.json()["error"]
