"""The registry decides what serves: promotion and rollback under traffic, the audit log, checksums,
stages, retirement headers, manifests, and models that were never registered.

Everything is real: the server (``testing.run``), its clients (httpx, tritonclient gRPC), the
registry database (SQLite, and PostgreSQL for the traffic test), and every registration is validated
in a child process (``inspect_in_child``). Version k of ``adder`` adds k, so each answer proves which
version computed it.

The audit log is checked at the end of the traffic test, on the rows that very run wrote: a test of
its own would have to repeat the whole rollout.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from click.testing import CliRunner
from tritonclient.utils import InferenceServerException

from modelserve import testing
from modelserve.cli.main import main
from modelserve.cli.registry import inspect_in_child
from modelserve.core.registration import register
from modelserve.protocol.v2.grpc import messages as pb
from modelserve.repository.registry import AuditAction, AuditEntry, RegistryStore, Stage, default_url
from tests.fixtures.models import _save_onnx, adder_model
from tests.fixtures.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures, used by name)

ACTOR = "release-bot@ci"  # the CLI's --actor, and the actor of every registry change made here
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
PREDICT = {"instances": [[1, 2, 3]]}
INTERVAL = 0.2  # seconds between the watcher's polls of the repository and the registry
SERVED_WITHIN = 10.0  # generous: loads share 2 busy cores with the traffic
SUNSET = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty registry database, kept outside the repository (so the server needs --registry-url)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry' / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def store(repo: Path) -> Iterator[RegistryStore]:
    """The repository's own registry (``REPO/.modelserve/registry.db``), what ``serve --registry`` opens."""
    with RegistryStore(default_url(repo)) as opened:
        yield opened


def _artifact(tmp_path: Path, k: int) -> Path:
    """An adder model that adds ``k``, outside the repository: what a training job hands over."""
    path = tmp_path / "artifacts" / f"adds-{k}" / "model.onnx"
    _save_onnx(path, adder_model(float(k)))
    return path


def _cli(repo: Path, *args: str, url: str | None = None) -> str:
    """``modelserve registry --repository REPO [--url URL] --actor ACTOR ARGS``; must succeed."""
    where = ["--repository", str(repo), *(["--url", url] if url else []), "--actor", ACTOR]
    result = CliRunner().invoke(main, ["registry", *where, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _register(store: RegistryStore, repo: Path, artifact: Path, config: str | None = None) -> int:
    """Register ``artifact`` as the next version of adder, validated in a child process."""
    done = register(
        store,
        repo,
        artifact,
        "adder",
        inspect=lambda path, name, text: inspect_in_child(path, name, text, trust_code=False, sample=None),
        config_text=config,
        actor=ACTOR,
    )
    return done.version.version


def _answered_by(response: httpx.Response) -> str:
    """The version that answered a v2 infer, checked against the numbers it computed (version v adds v)."""
    assert response.status_code == 200, response.text
    doc = response.json()
    version = str(doc["model_version"])
    assert doc["outputs"][0]["data"] == [1 + int(version), 2 + int(version), 3 + int(version)], doc
    return version


def _index(client: httpx.Client, model: str = "adder") -> dict[str | None, dict[str, Any]]:
    """The repository index rows of ``model`` by version (None: the row of a model without versions)."""
    rows = client.post("/v2/repository/index", json={}).json()
    return {row.get("version"): row for row in rows if row["name"] == model}


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SERVED_WITHIN
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {SERVED_WITHIN} s")


def _grpc_input() -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
    return tensor


class Traffic:
    """A REST and a gRPC client calling ``adder`` without a version until stopped.

    Each answer is checked against the version that says it computed it; anything else (an error
    status, a wrong number) is a failure.
    """

    def __init__(self, server: testing.run) -> None:
        self.answers: Counter[tuple[str, str]] = Counter()  # (client, version) -> answers
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._http = httpx.Client(base_url=server.http_url, timeout=30)
        self._grpc = grpcclient.InferenceServerClient(server.grpc_target)
        self._threads = [
            threading.Thread(target=self._loop, args=("rest", self._rest), daemon=True),
            threading.Thread(target=self._loop, args=("grpc", self._grpc_call), daemon=True),
        ]

    def _rest(self) -> str:
        return _answered_by(self._http.post("/v2/models/adder/infer", json=BODY))

    def _grpc_call(self) -> str:
        result = self._grpc.infer("adder", [_grpc_input()], client_timeout=30)
        version = result.get_response().model_version
        added = int(version)
        assert result.as_numpy("y").ravel().tolist() == [1 + added, 2 + added, 3 + added], version
        return str(version)

    def _loop(self, client: str, call: Callable[[], str]) -> None:
        while not self._stop.is_set():
            try:
                version = call()
            except Exception as exc:
                with self._lock:
                    self.failures.append(f"{client}: {exc!r}")
                continue
            with self._lock:
                self.answers[client, version] += 1

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._http.close()
        self._grpc.close()

    def wait_for(self, version: str) -> None:
        """Return once both clients have had a few more answers from ``version`` than they had now."""
        with self._lock:
            before = {c: self.answers[c, version] for c in ("rest", "grpc")}

        def served() -> bool:
            with self._lock:
                return all(self.answers[c, version] >= n + 3 for c, n in before.items())

        _eventually(served, f"version {version} serving both clients (answers so far: {self.answers})")


def test_promotion_and_rollback_under_traffic_drop_nothing(tmp_path: Path, repo: Path, registry_url: str) -> None:
    for k in (1, 2):
        out = _cli(repo, "register", str(_artifact(tmp_path, k)), "--name", "adder", url=registry_url)
        assert f"registered adder version {k}" in out
    _cli(repo, "promote", "adder", "1", "--to", "production", url=registry_url)

    with testing.run(repo, registry=True, registry_url=registry_url, watch_interval=INTERVAL) as srv:
        with Traffic(srv) as traffic:
            traffic.wait_for("1")
            _cli(repo, "promote", "adder", "2", "--to", "production", "--reason", "better", url=registry_url)
            traffic.wait_for("2")
            out = _cli(repo, "rollback", "adder", "--reason", "worse", url=registry_url)
            assert "production is version 1 again (was 2)" in out
            traffic.wait_for("1")
        assert traffic.failures == []
        assert {version for _, version in traffic.answers} == {"1", "2"}
        _assert_archived_version_is_gone(srv)
        with RegistryStore(registry_url) as store:  # the unload of version 2 follows the switch back
            _eventually(lambda: ("unload", 2) in _server_events(store.history("adder")), "unload of version 2")

    with RegistryStore(registry_url) as store:
        _assert_audited(store.history("adder"))


def _assert_archived_version_is_gone(srv: testing.run) -> None:
    """Version 2, archived by the rollback, answers 410 (REST) / NOT_FOUND (gRPC) naming its replacement."""
    with httpx.Client(base_url=srv.http_url, timeout=30) as client:
        gone = client.post("/v2/models/adder/versions/2/infer", json=BODY)
        assert gone.status_code == 410, gone.text
        message = gone.json()["error"]
        assert "version 2 is archived" in message and "version 1 replaced it" in message
        status = client.get("/v1/models/adder/labels/production").json()["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [("1", "AVAILABLE")]
    grpc = grpcclient.InferenceServerClient(srv.grpc_target)
    try:
        with pytest.raises(InferenceServerException) as info:
            grpc.infer("adder", [_grpc_input()], model_version="2")
    finally:
        grpc.close()
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert message in info.value.message()


def _server_events(history: list[AuditEntry]) -> list[tuple[str, int | None]]:
    return [(e.action.value, e.version) for e in history if e.actor.startswith("server@")]


def _assert_audited(history: list[AuditEntry]) -> None:
    """Each CLI change is one audit row (a promotion also archives the version it replaces), and the
    server recorded what it loaded and unloaded as it followed them."""
    by_cli = [(e.action, e.version) for e in history if e.actor == ACTOR]
    assert by_cli == [
        (AuditAction.REGISTER, 1),
        (AuditAction.REGISTER, 2),
        (AuditAction.PROMOTE, 1),
        (AuditAction.ARCHIVE, 1),
        (AuditAction.PROMOTE, 2),
        (AuditAction.ARCHIVE, 2),
        (AuditAction.ROLLBACK, 1),
    ]
    assert {e.reason for e in history if e.action is AuditAction.ROLLBACK} == {"worse"}
    assert _server_events(history) == [("load", 1), ("load", 2), ("unload", 1), ("load", 1), ("unload", 2)]
    assert len({e.actor for e in history} - {ACTOR}) == 1  # the CLI and the one server, nobody else


def test_a_version_whose_files_changed_is_never_served(tmp_path: Path, repo: Path, store: RegistryStore) -> None:
    _register(store, repo, _artifact(tmp_path, 1))
    store.set_stage("adder", 1, Stage.PRODUCTION, actor=ACTOR)
    _save_onnx(repo / "adder" / "1" / "model.onnx", adder_model(5.0))  # valid, but not what was registered

    with (
        testing.run(repo, registry=True, watch_interval=INTERVAL) as srv,
        httpx.Client(base_url=srv.http_url) as client,
    ):
        row = _index(client)["1"]
        assert row["state"] == "FAILED" and "checksum mismatch" in row["reason"] and "model.onnx" in row["reason"]
        refused = client.post("/v2/models/adder/infer", json=BODY)
        assert refused.status_code == 503 and "checksum mismatch" in refused.json()["error"], refused.text

        _register(store, repo, _artifact(tmp_path, 2))
        store.set_stage("adder", 2, Stage.PRODUCTION, actor=ACTOR)
        _eventually(lambda: client.post("/v2/models/adder/infer", json=BODY).status_code == 200, "version 2 served")
        assert _answered_by(client.post("/v2/models/adder/infer", json=BODY)) == "2"

    failed = [e for e in store.history("adder") if e.action is AuditAction.LOAD_FAILED]
    assert failed and all(e.version == 1 and "checksum mismatch" in e.reason for e in failed)


def test_a_staging_server_serves_the_staging_version(tmp_path: Path, repo: Path, store: RegistryStore) -> None:
    for k in (1, 2):
        _register(store, repo, _artifact(tmp_path, k))
    store.set_stage("adder", 1, Stage.PRODUCTION, actor=ACTOR)
    store.set_stage("adder", 2, Stage.STAGING, actor=ACTOR)

    with testing.run(repo, registry=True, stage="staging") as srv, httpx.Client(base_url=srv.http_url) as client:
        assert _answered_by(client.post("/v2/models/adder/infer", json=BODY)) == "2"
        labelled = client.post("/v2/models/adder/infer", json=BODY, headers={"Model-Version-Label": "staging"})
        assert _answered_by(labelled) == "2"
        predicted = client.post("/v1/models/adder/labels/staging:predict", json=PREDICT)
        assert predicted.status_code == 200 and predicted.json()["predictions"] == [[3, 4, 5]], predicted.text

        production = client.post("/v2/models/adder/versions/1/infer", json=BODY)
        assert production.status_code == 404, production.text
        assert "version 1 is in stage production" in production.json()["error"]
        assert list(_index(client)) == ["2"]


def test_a_version_scheduled_for_retirement_says_so(tmp_path: Path, repo: Path, store: RegistryStore) -> None:
    for k in (1, 2):
        _register(store, repo, _artifact(tmp_path, k))
    store.set_stage("adder", 1, Stage.PRODUCTION, actor=ACTOR)

    with (
        testing.run(repo, registry=True, watch_interval=INTERVAL) as srv,
        httpx.Client(base_url=srv.http_url) as client,
    ):

        def responses() -> list[httpx.Response]:
            infer = client.post("/v2/models/adder/infer", json=BODY)
            predict = client.post("/v1/models/adder:predict", json=PREDICT)
            assert infer.status_code == predict.status_code == 200, (infer.text, predict.text)
            return [infer, predict]

        assert not any({"deprecation", "sunset"} & set(r.headers) for r in responses())

        _cli(repo, "deprecate", "adder", "1", "--sunset", SUNSET.strftime("%Y-%m-%dT%H:%M:%S"))
        _eventually(lambda: "sunset" in client.post("/v2/models/adder/infer", json=BODY).headers, "Sunset header")
        deprecated = [e.at for e in store.history("adder") if e.action is AuditAction.DEPRECATE]
        for response in responses():
            assert response.headers["deprecation"] == f"@{int(deprecated[-1].timestamp())}"
            assert response.headers["sunset"] == format_datetime(SUNSET, usegmt=True) == "Thu, 02 Jan 2031 03:04:05 GMT"
        assert _grpc_trailers(srv) == {
            "deprecation": f"@{int(deprecated[-1].timestamp())}",
            "sunset": SUNSET.isoformat(),
        }

        store.set_stage("adder", 2, Stage.PRODUCTION, actor=ACTOR)  # version 2 has no retirement scheduled
        _eventually(lambda: _answered_by(client.post("/v2/models/adder/infer", json=BODY)) == "2", "version 2")
        assert not any({"deprecation", "sunset"} & set(r.headers) for r in responses())


def _grpc_trailers(srv: testing.run) -> dict[str, str]:
    """The retirement metadata a gRPC ModelInfer of ``adder`` ends with."""
    msg = pb.ModelInferRequest(model_name="adder")
    tensor = msg.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    tensor.contents.fp32_contents.extend([1, 2, 3])
    with grpc.insecure_channel(srv.grpc_target) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        _, call = infer.with_call(msg.SerializeToString(), timeout=10)
    return {k: v for k, v in call.trailing_metadata() or () if k in ("deprecation", "sunset")}


def test_a_manifest_serves_exactly_what_it_lists(tmp_path: Path, repo: Path, store: RegistryStore) -> None:
    for k in (1, 2, 3):
        _register(store, repo, _artifact(tmp_path, k), config="version_policy: all\n")
    store.set_stage("adder", 2, Stage.PRODUCTION, actor=ACTOR)
    manifest = tmp_path / "m.yaml"
    _cli(repo, "export", "--stage", "production", "-o", str(manifest))
    listed = yaml.safe_load(manifest.read_text())["models"]
    assert [(m["name"], m["version"]) for m in listed] == [("adder", 2)]

    config = repo / "adder" / "config.yaml"
    with (
        testing.run(repo, manifest=str(manifest), watch_interval=INTERVAL) as srv,
        httpx.Client(base_url=srv.http_url) as client,
    ):
        assert {v: row["state"] for v, row in _index(client).items()} == {"2": "READY"}  # not 1 and 3, on disk
        assert _answered_by(client.post("/v2/models/adder/infer", json=BODY)) == "2"
        for other in (1, 3):
            assert client.post(f"/v2/models/adder/versions/{other}/infer", json=BODY).status_code == 404

        config.write_text("version_policy: all\n# edited after the export\n")
        # a failed reload leaves the serving version serving (manager.load_model), saying why
        _eventually(lambda: "config.yaml" in _index(client)["2"].get("reason", ""), "the reload refused")
        assert _index(client)["2"]["state"] == "READY"
        assert _answered_by(client.post("/v2/models/adder/infer", json=BODY)) == "2"

    with testing.run(repo, manifest=str(manifest)) as srv, httpx.Client(base_url=srv.http_url) as client:
        row = _index(client)["2"]
        assert row["state"] == "FAILED" and "config.yaml" in row["reason"], row
        refused = client.post("/v2/models/adder/infer", json=BODY)
        assert refused.status_code == 503 and "config.yaml" in refused.json()["error"], refused.text


def test_an_unregistered_model_is_listed_and_stops_no_other(tmp_path: Path, repo: Path, store: RegistryStore) -> None:
    _register(store, repo, _artifact(tmp_path, 1))
    store.set_stage("adder", 1, Stage.PRODUCTION, actor=ACTOR)
    _save_onnx(repo / "stray" / "1" / "model.onnx", adder_model(7.0))  # copied in by hand, never registered

    with testing.run(repo, registry=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        stray = _index(client, "stray")
        assert list(stray) == [None] and "not registered" in stray[None]["reason"], stray
        refused = client.post("/v2/models/stray/infer", json=BODY)
        assert refused.status_code == 503 and "not registered" in refused.json()["error"], refused.text
        assert _answered_by(client.post("/v2/models/adder/infer", json=BODY)) == "1"
