"""The model repository extension (index, load, unload) over REST and gRPC, with Triton's clients."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from modelserve import testing
from modelserve.protocol.v2.grpc import messages as pb
from tests.conftest import IRIS_REQUEST

LOAD = "/inference.GRPCInferenceService/RepositoryModelLoad"


@pytest.fixture(scope="module")
def control(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.run]:
    """A server with the control API on, over a private copy of the repository it may change."""
    root = tmp_path_factory.mktemp("control") / "models"
    root.mkdir()
    for name in ("iris", "adder", "broken"):
        shutil.copytree(repo / name, root / name)
    with testing.run(root, control_api=True) as srv:
        yield srv


@pytest.fixture
def rest(control: testing.run) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=control.http_url, timeout=60) as c:
        yield c


def _index(c: httpx.Client, ready: bool = False) -> list[dict]:
    response = c.post("/v2/repository/index", json={"ready": ready})
    assert response.status_code == 200, response.text
    return response.json()


def test_index_lists_every_version_with_state_and_reason(rest: httpx.Client) -> None:
    rows = _index(rest)
    assert {"name": "iris", "version": "1", "state": "READY"} in rows
    assert [r["version"] for r in rows if r["name"] == "adder"] == ["2", "3"]  # policy latest: 2
    (broken,) = [r for r in rows if r["name"] == "broken"]
    assert broken["state"] == "FAILED" and "model.onnx: not an ONNX model" in broken["reason"]
    ready = _index(rest, ready=True)
    assert {r["name"] for r in ready} == {"iris", "adder"} and all(r["state"] == "READY" for r in ready)
    assert rest.post("/v2/repository/index").json() == rows  # an empty body is {"ready": false}


def test_unload_then_load_across_transports(control: testing.run, rest: httpx.Client) -> None:
    http_client = th.InferenceServerClient(control.http_url.removeprefix("http://"))
    grpc_client = tg.InferenceServerClient(control.grpc_target)
    http_client.unload_model("iris")
    assert rest.post("/v2/models/iris/infer", json=IRIS_REQUEST).status_code == 503
    assert not grpc_client.is_model_ready("iris")
    index = grpc_client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "iris", "version": "1", "state": "UNLOADED", "reason": "unloaded"} in index
    assert {"name": "iris", "version": "1", "state": "UNLOADED", "reason": "unloaded"} in (
        http_client.get_model_repository_index()
    )
    http_client.unload_model("iris")  # unloading twice is harmless
    grpc_client.load_model("iris")
    assert http_client.is_model_ready("iris")
    assert rest.post("/v2/models/iris/infer", json=IRIS_REQUEST).json()["outputs"][0]["data"] == [0]


def test_load_a_model_added_after_start(control: testing.run, rest: httpx.Client) -> None:
    shutil.copytree(control.config.repository / "iris", control.config.repository / "iris-new")
    assert {"name": "iris-new"} in _index(rest)  # in the repository, never loaded
    assert rest.post("/v2/models/iris-new/infer", json=IRIS_REQUEST).status_code == 404
    assert rest.post("/v2/repository/models/iris-new/load").status_code == 200
    assert rest.post("/v2/models/iris-new/infer", json=IRIS_REQUEST).json()["outputs"][0]["data"] == [0]


def test_reload_with_changed_config_drops_no_request(control: testing.run, rest: httpx.Client) -> None:
    config = control.config.repository / "iris" / "config.yaml"
    original = config.read_text()
    failures: list[str] = []
    done = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=control.http_url, timeout=30) as c:
            while not done.is_set():
                response = c.post("/v2/models/iris/infer", json=IRIS_REQUEST)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(3):
            config.write_text(original + f"metadata: {{revision: {i}}}\n")
            assert rest.post("/v2/repository/models/iris/load").status_code == 200
            assert rest.get("/v2/models/iris").json()["parameters"] == {"revision": i}
    finally:
        done.set()
        for t in threads:
            t.join()
        config.write_text(original)
    assert failures == []


def test_failed_reload_keeps_the_serving_version(control: testing.run, rest: httpx.Client) -> None:
    root = control.config.repository
    (root / "iris" / "2").mkdir()
    (root / "iris" / "2" / "model.onnx").write_bytes(b"not onnx")
    try:
        response = rest.post("/v2/repository/models/iris/load")
        assert response.status_code == 400
        error = response.json()["error"]
        assert "version 2" in error and "model.onnx: not an ONNX model" in error and "stay" in error
        assert rest.post("/v2/models/iris/infer", json=IRIS_REQUEST).status_code == 200
        rows = {row["version"]: row for row in _index(rest) if row["name"] == "iris"}
        assert rows["1"]["state"] == "READY" and "last reload failed" in rows["1"]["reason"]
        assert rows["2"]["state"] == "FAILED" and "model.onnx: not an ONNX model" in rows["2"]["reason"]
    finally:
        shutil.rmtree(root / "iris" / "2")


def test_first_load_failure_is_reported_and_indexed(control: testing.run, rest: httpx.Client) -> None:
    (control.config.repository / "junk" / "1").mkdir(parents=True)
    (control.config.repository / "junk" / "1" / "model.onnx").write_bytes(b"junk")
    response = rest.post("/v2/repository/models/junk/load")
    assert response.status_code == 400 and "model 'junk' failed to load: version 1" in response.json()["error"]
    (row,) = [r for r in _index(rest) if r["name"] == "junk"]
    assert row["state"] == "FAILED" and "not an ONNX model" in row["reason"]


@pytest.mark.parametrize("path", ["nope/load", "nope/unload"])
def test_unknown_model_is_404(rest: httpx.Client, path: str) -> None:
    response = rest.post(f"/v2/repository/models/{path}")
    assert response.status_code == 404 and "'nope' is not in the repository" in response.json()["error"]


@pytest.mark.parametrize(
    "name", ["..", "../iris", "%2e%2e", "a%2Fb", "..%2F..%2Fetc", "%00", "iris%00", "/etc/passwd", ".hidden", "a\\b"]
)
def test_names_escaping_the_repository_are_400(control: testing.run, name: str) -> None:
    # http.client sends the path as given; httpx (like browsers) would resolve "/../" itself
    host, port = control.http_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", f"/v2/repository/models/{name}/load")
        response = connection.getresponse()
        status, body = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 400, body
    assert "invalid model name" in body["error"]


@pytest.mark.parametrize("name", ["..", "../iris", "a/b", "iris\x00", "/abs/path", ""])
def test_names_escaping_the_repository_are_invalid_argument_over_grpc(control: testing.run, name: str) -> None:
    with grpc.insecure_channel(control.grpc_target) as channel, pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(LOAD)(pb.RepositoryModelLoadRequest(model_name=name).SerializeToString(), timeout=30)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid model name" in err.value.details()


def test_load_overrides_are_unimplemented(control: testing.run, rest: httpx.Client) -> None:
    response = rest.post("/v2/repository/models/iris/load", json={"parameters": {"config": "{}"}})
    assert response.status_code == 501 and "['config']" in response.json()["error"]
    client = tg.InferenceServerClient(control.grpc_target)
    with pytest.raises(InferenceServerException, match="UNIMPLEMENTED"):
        client.load_model("iris", config='{"backend": "onnxruntime"}')
    assert rest.post("/v2/repository/models/iris/load", content=b"{oops").status_code == 400


def test_control_api_is_off_by_default(server: testing.run, client: httpx.Client) -> None:
    for action in ("load", "unload"):
        response = client.post(f"/v2/repository/models/iris/{action}")
        assert response.status_code == 403 and "--control-api on" in response.json()["error"]
    with pytest.raises(InferenceServerException) as denied:
        tg.InferenceServerClient(server.grpc_target).unload_model("iris")
    assert denied.value.status() == "StatusCode.PERMISSION_DENIED"
    assert client.post("/v2/models/iris/infer", json=IRIS_REQUEST).status_code == 200  # nothing happened
    assert client.post("/v2/repository/index").status_code == 200  # the read-only index stays available


def test_bad_index_requests_are_400(rest: httpx.Client) -> None:
    assert "'ready' must be true or false" in rest.post("/v2/repository/index", json={"ready": "yes"}).json()["error"]
    assert rest.post("/v2/repository/index", json=[1]).status_code == 400
    assert rest.get("/v2/repository/index").status_code == 405
