"""Hot reload under constant traffic: publish a version, publish a broken one, change the policy.

REST and gRPC clients send requests without a version the whole time; not one may fail, a new
version must be served within a few poll intervals, and the broken version must never answer.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from modelserve import testing
from modelserve.core.watcher import RepositoryWatcher
from tests.fixtures.models import _save_onnx, adder_model

INTERVAL = 0.2  # seconds between polls
SERVED_WITHIN = 10.0  # generous: loads share 2 busy cores with the traffic


class Traffic:
    """Client threads that call ``adder`` without a version until stopped; they record what answered."""

    def __init__(self, server: testing.run) -> None:
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=server.http_url, timeout=30)
        self._grpc_client = grpcclient.InferenceServerClient(server.grpc_target)
        self._threads = [
            threading.Thread(target=self._loop, args=(self._rest(self._http),), daemon=True),
            threading.Thread(target=self._loop, args=(self._grpc(self._grpc_client),), daemon=True),
        ]

    @staticmethod
    def _rest(client: httpx.Client) -> Callable[[], str]:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}

        def call() -> str:
            response = client.post("/v2/models/adder/infer", json=body)
            if response.status_code != 200:
                raise AssertionError(f"REST {response.status_code}: {response.text}")
            doc = response.json()
            _check(doc["model_version"], doc["outputs"][0]["data"])
            return str(doc["model_version"])

        return call

    @staticmethod
    def _grpc(client: grpcclient.InferenceServerClient) -> Callable[[], str]:
        tensor = grpcclient.InferInput("x", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))

        def call() -> str:
            result = client.infer("adder", [tensor], client_timeout=30)
            version = result.get_response().model_version
            _check(version, result.as_numpy("y").ravel().tolist())
            return str(version)

        return call

    def _loop(self, call: Callable[[], str]) -> None:
        while not self._stop.is_set():
            try:
                version = call()
            except Exception as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                continue
            with self._lock:
                self.versions[version] += 1
                self.last = version

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._http.close()
        self._grpc_client.close()

    def wait_for(self, version: str) -> float:
        """Seconds until a request after now is answered by ``version``."""
        started = time.monotonic()
        with self._lock:
            self.versions[f"seen-before-{version}"] = self.versions[version]
        while time.monotonic() - started < SERVED_WITHIN:
            with self._lock:
                if self.versions[version] > self.versions[f"seen-before-{version}"] + 5:
                    return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"version {version} not served within {SERVED_WITHIN} s; served: {self.versions}")


def _check(version: str, data: list[float]) -> None:
    """Version v adds v to each element: the answer must come from the version that says so."""
    added = int(version)
    assert data == [1 + added, 2 + added, 3 + added], (version, data)


def _publish(repo: Path, version: int, write: Callable[[Path], None]) -> None:
    """Write the version beside the repository, then rename it into place: what the README advises."""
    staging = repo / f".staging-{version}"
    write(staging / "model.onnx")
    staging.rename(repo / "adder" / str(version))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _save_onnx(tmp_path / "adder" / "1" / "model.onnx", adder_model(1.0))
    return tmp_path


@pytest.fixture
def server(repo: Path) -> Iterator[testing.run]:
    with testing.run(repo, watch_interval=INTERVAL) as srv:
        yield srv


def test_publish_break_and_repolicy_under_traffic_drops_nothing(repo: Path, server: testing.run) -> None:
    with Traffic(server) as traffic:
        traffic.wait_for("1")

        _publish(repo, 2, lambda path: _save_onnx(path, adder_model(2.0)))
        traffic.wait_for("2")

        _publish(repo, 3, lambda path: (path.parent.mkdir(parents=True), path.write_bytes(b"not an onnx graph")))
        time.sleep(INTERVAL * 10)  # several polls: the broken version loads, fails, and is dropped
        assert traffic.last == "2"
        _assert_failure_visible(server, version=3, serving=2)

        (repo / "adder" / "config.yaml").write_text("version_policy: {specific: [1]}\n")
        traffic.wait_for("1")

    assert traffic.failures == []
    assert "3" not in traffic.versions
    with httpx.Client(base_url=server.http_url) as client:
        assert client.get("/v2/models/adder/versions/2/ready").status_code != 200  # retired by the policy
        assert client.get("/v2/models/adder/versions/1/ready").status_code == 200


def _assert_failure_visible(server: testing.run, version: int, serving: int) -> None:
    """The failed version is listed with its reason by the repository index and the v1 status."""
    with httpx.Client(base_url=server.http_url) as client:
        index = {row.get("version"): row for row in client.post("/v2/repository/index", json={}).json()}
        assert index[str(version)]["state"] == "FAILED"
        assert "onnx" in index[str(version)]["reason"].lower()
        assert index[str(serving)]["state"] == "READY"
        assert "last reload failed" in index[str(serving)]["reason"]
        status = {s["version"]: s for s in client.get("/v1/models/adder").json()["model_version_status"]}
        assert status[str(version)]["state"] == "END"
        assert status[str(version)]["status"]["error_code"] == "UNKNOWN"
        assert status[str(version)]["status"]["error_message"] == index[str(version)]["reason"]
        assert status[str(serving)]["state"] == "AVAILABLE"
        response = client.get(f"/v2/models/adder/versions/{version}/ready")
        assert response.status_code == 503 and "FAILED" in response.json()["error"]


def test_new_model_is_served_and_removed_model_unloaded(repo: Path, server: testing.run) -> None:
    with httpx.Client(base_url=server.http_url) as client:
        staging = repo / ".staging-new"
        _save_onnx(staging / "1" / "model.onnx", adder_model(5.0))
        staging.rename(repo / "fresh")
        _eventually(lambda: client.get("/v2/models/fresh/ready").status_code == 200)

        for file in sorted((repo / "fresh").rglob("*"), reverse=True):
            file.unlink() if file.is_file() else file.rmdir()
        (repo / "fresh").rmdir()
        _eventually(lambda: client.get("/v2/models/fresh/ready").status_code != 200)
        assert client.get("/v2/models/adder/ready").status_code == 200


def test_a_change_loads_only_once_it_has_settled(repo: Path) -> None:
    """Polls driven by hand: a version whose artifact changed since the last poll (still being
    copied) is not loaded; it loads at the first poll that sees it unchanged."""
    target = repo / "adder" / "2" / "model.onnx"
    complete = adder_model(2.0).SerializeToString()
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        watcher = RepositoryWatcher(srv.server.manager, interval=3600)
        watcher.prime()

        def v2_ready() -> bool:
            return client.get("/v2/models/adder/versions/2/ready").status_code == 200

        target.parent.mkdir()
        for end in (len(complete) // 3, 2 * len(complete) // 3, len(complete)):
            target.write_bytes(complete[:end])
            srv.call(watcher.poll())
            assert not v2_ready(), f"loaded at {end} of {len(complete)} bytes, before it settled"
        srv.call(watcher.poll())  # the same files as the previous poll: settled
        assert v2_ready()


def _eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SERVED_WITHIN
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_file_system_events_serve_a_new_version_long_before_the_next_poll(repo: Path) -> None:
    """With a 60 s poll, only a file-system event can get version 2 served within seconds."""
    with testing.run(repo, watch_interval=60.0) as srv, httpx.Client(base_url=srv.http_url) as client:
        started = time.monotonic()
        _publish(repo, 2, lambda path: _save_onnx(path, adder_model(2.0)))
        _eventually(lambda: client.get("/v2/models/adder/versions/2/ready").status_code == 200)
        assert time.monotonic() - started < SERVED_WITHIN
