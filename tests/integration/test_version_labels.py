"""Version labels (config.yaml ``version_labels``): routed on TF Serving's ``/labels/{l}`` URLs, by
the v2 ``Model-Version-Label`` header or ``version_label`` parameter, and by gRPC metadata."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from modelserve import testing
from modelserve.core.watcher import RepositoryWatcher
from tests.fixtures.models import _save_onnx, adder_model

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
LABELS = "version_policy: all\nversion_labels: {stable: 2, canary: 3, ghost: 9}\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labels")
    for version in (1, 2, 3):
        _save_onnx(root / "adder" / str(version) / "model.onnx", adder_model(float(version)))
    (root / "adder" / "config.yaml").write_text(LABELS)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[testing.run]:
    with testing.run(repo) as srv:
        yield srv


@pytest.fixture
def rest(server: testing.run) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url) as client:
        yield client


def _answered_by(doc: dict[str, object]) -> str:
    """The version in the response, checked against the numbers it computed (version v adds v)."""
    version = str(doc["model_version"])
    outputs = doc["outputs"]
    assert isinstance(outputs, list)
    assert outputs[0]["data"] == [1 + int(version), 2 + int(version), 3 + int(version)]
    return version


def test_tf_serving_label_urls(rest: httpx.Client) -> None:
    response = rest.post("/v1/models/adder/labels/canary:predict", json={"instances": [[1, 2, 3]]})
    assert response.status_code == 200 and response.json()["predictions"] == [[4, 5, 6]]
    status = rest.get("/v1/models/adder/labels/stable").json()["model_version_status"]
    assert [s["version"] for s in status] == ["2"] and status[0]["state"] == "AVAILABLE"
    metadata = rest.get("/v1/models/adder/labels/stable/metadata").json()
    assert metadata["model_spec"]["version"] == "2"


def test_v2_header_and_parameter(rest: httpx.Client) -> None:
    by_header = rest.post("/v2/models/adder/infer", json=BODY, headers={"Model-Version-Label": "canary"})
    assert _answered_by(by_header.json()) == "3"
    by_parameter = rest.post("/v2/models/adder/infer", json={**BODY, "parameters": {"version_label": "stable"}})
    assert _answered_by(by_parameter.json()) == "2"
    assert _answered_by(rest.post("/v2/models/adder/infer", json=BODY).json()) == "3"  # no label: the latest
    ready = rest.get("/v2/models/adder/ready", headers={"Model-Version-Label": "stable"})
    assert ready.status_code == 200
    metadata = rest.get("/v2/models/adder", headers={"Model-Version-Label": "stable"})
    assert metadata.status_code == 200


def test_grpc_metadata_and_parameter(server: testing.run) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    tensor = grpcclient.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
    result = client.infer("adder", [tensor], headers={"model-version-label": "stable"})
    assert result.get_response().model_version == "2"
    np.testing.assert_array_equal(result.as_numpy("y"), [[3, 4, 5]])
    result = client.infer("adder", [tensor], parameters={"version_label": "canary"})
    assert result.get_response().model_version == "3"
    with pytest.raises(InferenceServerException) as info:
        client.infer("adder", [tensor], headers={"model-version-label": "nope"})
    assert info.value.status() == "StatusCode.NOT_FOUND" and "no version label 'nope'" in info.value.message()
    client.close()


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "words"),
    [
        ("/v1/models/adder/labels/nope", {}, None, 404, ["no version label 'nope'", "['canary', 'ghost', 'stable']"]),
        ("/v1/models/adder/labels/42:predict", {}, {"instances": [[1, 2, 3]]}, 400, ["version label", "'42'"]),
        ("/v1/models/adder/labels/ghost", {}, None, 503, ["names version 9", "not loaded"]),
        (
            "/v2/models/adder/versions/1/infer",
            {"Model-Version-Label": "stable"},
            BODY,
            400,
            ["version 1", "version label 'stable'", "name one"],
        ),
        (
            "/v2/models/adder/infer",
            {"Model-Version-Label": "stable"},
            {**BODY, "parameters": {"version_label": "canary"}},
            400,
            ["different version labels", "'stable'", "'canary'"],
        ),
        ("/v2/models/adder/infer", {}, {**BODY, "parameters": {"version_label": 3}}, 400, ["must be a string"]),
    ],
)
def test_bad_labels_are_named(
    rest: httpx.Client, path: str, headers: dict[str, str], body: object, status: int, words: list[str]
) -> None:
    response = rest.post(path, json=body, headers=headers) if body is not None else rest.get(path, headers=headers)
    assert response.status_code == status, response.text
    for word in words:
        assert word in response.json()["error"]


def test_moving_a_label_reloads_nothing(tmp_path: Path) -> None:
    """Relabelling is a routing change: the loaded versions keep serving, nothing loads again."""
    for version in (1, 2):
        _save_onnx(tmp_path / "adder" / str(version) / "model.onnx", adder_model(float(version)))
    config = tmp_path / "adder" / "config.yaml"
    config.write_text("version_policy: all\nversion_labels: {stable: 1}\n")
    with testing.run(tmp_path) as srv, httpx.Client(base_url=srv.http_url) as client:
        watcher = RepositoryWatcher(srv.server.manager, interval=3600)
        watcher.prime()
        loaded = dict(srv.server.manager.model("adder").versions)
        stable = {"Model-Version-Label": "stable"}
        assert _answered_by(client.post("/v2/models/adder/infer", json=BODY, headers=stable).json()) == "1"

        time.sleep(0.01)  # a new mtime even on coarse file systems
        config.write_text("version_policy: all\nversion_labels: {stable: 2}\n")
        srv.call(watcher.poll())
        srv.call(watcher.poll())  # settled
        assert _answered_by(client.post("/v2/models/adder/infer", json=BODY, headers=stable).json()) == "2"
        assert srv.server.manager.model("adder").versions == loaded  # the same objects: nothing reloaded
