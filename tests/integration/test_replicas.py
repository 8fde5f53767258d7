"""Many replicas, one source of truth: servers sharing one registry (PostgreSQL) and one artifact
store (a ``file://`` directory), each fetching into its own cache, verified by checksum.

Everything is real: three ``modelserve serve`` processes on loopback (ephemeral ports read from
their logs), one PostgreSQL (tests/fixtures/postgres.py), registrations through the CLI (validated
in a child process, published to the store), and client threads spreading requests round-robin
over the replicas. Version k of ``adder`` adds k, so each answer proves which version computed it.

The figures (convergence time of each replica after a promotion and a rollback, requests sent and
failed meanwhile) are printed: ``pytest -s tests/integration/test_replicas.py``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from modelserve import testing
from modelserve.cli.main import main
from modelserve.repository.registry import AuditAction, RegistryStore
from tests.fixtures.models import _save_onnx, adder_model
from tests.fixtures.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures, used by name)
from tests.fixtures.serve_process import Served

ACTOR = "release-bot@ci"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
INTERVAL = 0.2  # each replica's poll of the registry and the artifact store
REPLICAS = 3
CLIENTS = 4  # client threads, each going round the replicas
CONVERGED_WITHIN = 10.0  # poll interval + fetch + load, generously: loads share the CPUs with the traffic


def _artifact(tmp_path: Path, k: int) -> Path:
    path = tmp_path / "artifacts" / f"adds-{k}" / "model.onnx"
    _save_onnx(path, adder_model(float(k)))
    return path


def _cli(repo: Path, url: str, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["registry", "--repository", str(repo), "--url", url, "--actor", ACTOR, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def _version(response: httpx.Response) -> int:
    """The version that answered, checked against what it computed (version v adds v)."""
    assert response.status_code == 200, response.text
    doc = response.json()
    version = int(doc["model_version"])
    assert doc["outputs"][0]["data"] == [1 + version, 2 + version, 3 + version], doc
    return version


@dataclass(frozen=True, slots=True)
class Answer:
    replica: int
    version: int
    sent: float  # time.monotonic() before the request
    done: float


class Spread:
    """Client threads sending ``BODY`` to ``adder`` round-robin over the replicas until stopped."""

    def __init__(self, urls: list[str]) -> None:
        self.answers: list[Answer] = []
        self.failures: list[tuple[float, int, str]] = []
        self.sent: list[float] = []
        self._urls = urls
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(CLIENTS)]

    def _loop(self, offset: int) -> None:
        clients = [httpx.Client(base_url=url, timeout=30) for url in self._urls]
        turn = offset
        try:
            while not self._stop.is_set():
                replica = turn % len(clients)
                turn += 1
                sent = time.monotonic()
                try:
                    version = _version(clients[replica].post("/v2/models/adder/infer", json=BODY))
                except Exception as exc:
                    with self._lock:
                        self.sent.append(sent)
                        self.failures.append((sent, replica, repr(exc)))
                    continue
                with self._lock:
                    self.sent.append(sent)
                    self.answers.append(Answer(replica, version, sent, time.monotonic()))
        finally:
            for client in clients:
                client.close()

    def __enter__(self) -> Spread:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def converge(self, version: int, since: float) -> list[float]:
        """Wait until every replica answers with ``version``; return each one's convergence time (s
        from ``since`` to its first answer from ``version``). Checks that a replica, once switched,
        never answers a request sent after that with another version."""
        deadline = since + CONVERGED_WITHIN
        while True:
            with self._lock:
                after = [a for a in self.answers if a.sent >= since]
            firsts = {}
            for replica in range(len(self._urls)):
                mine = [a for a in after if a.replica == replica and a.version == version]
                if len(mine) >= 3:
                    firsts[replica] = min(a.done for a in mine)
            if len(firsts) == len(self._urls):
                break
            assert time.monotonic() < deadline, f"not every replica serves version {version}: {firsts}"
            time.sleep(0.05)
        late = [a for a in after if a.version != version and a.sent > firsts[a.replica]]
        assert late == [], f"a replica answered with another version after switching to {version}: {late[:3]}"
        return [firsts[r] - since for r in range(len(self._urls))]

    def between(self, start: float, end: float) -> tuple[int, int]:
        """(requests sent, requests failed) in [start, end)."""
        with self._lock:
            return sum(start <= s < end for s in self.sent), sum(start <= f[0] < end for f in self.failures)


@contextmanager
def _replicas(tmp_path: Path, *options: str) -> Iterator[list[Served]]:
    """``REPLICAS`` serve processes, started side by side, each with its own (empty) cache."""
    with ExitStack() as stack, ThreadPoolExecutor(REPLICAS) as pool:
        futures = [
            pool.submit(Served, tmp_path / f"cache-{i}", *options, "--watch-interval", str(INTERVAL))
            for i in range(REPLICAS)
        ]
        started: list[Served] = []
        errors = []
        for future in futures:
            try:
                started.append(stack.enter_context(future.result()))
            except Exception as exc:  # the others are stopped by the stack
                errors.append(exc)
        if errors:
            raise errors[0]
        yield started


@pytest.fixture
def registry_url(request: pytest.FixtureRequest) -> str:
    """An empty database on the real PostgreSQL server every replica shares."""
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_replicas_converge_on_promotion_and_rollback_under_load(tmp_path: Path, registry_url: str) -> None:
    store_url = f"file://{tmp_path / 'store'}"
    build = tmp_path / "build"  # the registering machine's repository: no replica reads it
    for k in (1, 2):
        out = _cli(
            build,
            registry_url,
            "register",
            str(_artifact(tmp_path, k)),
            "--name",
            "adder",
            "--artifact-store",
            store_url,
        )
        assert f"published adder version {k} to {store_url}/adder/{k}" in out
    _cli(build, registry_url, "promote", "adder", "1", "--to", "production")

    options = ("--registry-url", registry_url, "--artifact-store", store_url)
    with _replicas(tmp_path, *options) as replicas:
        for replica in replicas:  # each fetched version 1 into its own cache before it was ready
            assert _version(httpx.post(f"{replica.http_url}/v2/models/adder/infer", json=BODY)) == 1
        with Spread([r.http_url for r in replicas]) as spread:
            time.sleep(0.5)  # some traffic on version 1 first
            promoted = time.monotonic()
            _cli(build, registry_url, "promote", "adder", "2", "--reason", "better")
            to_v2 = spread.converge(2, promoted)
            settled = time.monotonic()
            time.sleep(0.5)
            rolled_back = time.monotonic()
            _cli(build, registry_url, "rollback", "adder", "--reason", "worse")
            to_v1 = spread.converge(1, rolled_back)
            ended = time.monotonic()
        figures = {
            "promotion": (to_v2, spread.between(promoted, settled)),
            "rollback": (to_v1, spread.between(rolled_back, ended)),
        }
        for what, (times, (sent, failed)) in figures.items():
            print(
                f"\n{what}: converged in "
                + ", ".join(f"{t:.2f} s" for t in times)
                + f"; {sent} requests, {failed} failed"
            )
        assert spread.failures == [], spread.failures[:5]
        assert len(spread.answers) > 100
        for replica in replicas:
            labelled = httpx.post(
                f"{replica.http_url}/v2/models/adder/infer", json=BODY, headers={"Model-Version-Label": "production"}
            )
            assert _version(labelled) == 1
        pids = {r.process.pid for r in replicas}
        with RegistryStore(registry_url) as store:
            _wait(
                lambda: _server_events(store, pids) == dict.fromkeys(pids, EVENTS), lambda: _server_events(store, pids)
            )
    for i in range(REPLICAS):  # each cache holds both versions, fetched once
        assert sorted(p.name for p in (tmp_path / f"cache-{i}" / "adder").iterdir()) == ["1", "2"]


# what each replica did, in order: the initial load, the switch to 2, the switch back
EVENTS = [("load", 1), ("load", 2), ("unload", 1), ("load", 1), ("unload", 2)]


def _server_events(store: RegistryStore, pids: set[int]) -> dict[int, list[tuple[str, int | None]]]:
    """Each replica's audit rows (actor ``server@host``; the pid in the details tells replicas on one host apart)."""
    events: dict[int, list[tuple[str, int | None]]] = {pid: [] for pid in pids}
    for entry in store.history("adder"):
        if entry.actor.startswith("server@"):
            events.setdefault(entry.details.get("pid", -1), []).append((entry.action.value, entry.version))
    return events


def _wait(condition: Callable[[], bool], state: Callable[[], object]) -> None:
    deadline = time.monotonic() + CONVERGED_WITHIN
    while not condition():
        assert time.monotonic() < deadline, state()
        time.sleep(0.05)


def test_a_corrupted_artifact_is_refused_and_the_serving_version_stays(tmp_path: Path) -> None:
    """Version 2's file in the store is altered after publication: no replica serves it, the index
    says why, version 1 keeps serving, and once the store holds the registered bytes again the
    replica fetches and serves version 2 without a restart."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    store_dir = tmp_path / "store"
    build = tmp_path / "build"
    for k in (1, 2):
        _cli(
            build,
            url,
            "register",
            str(_artifact(tmp_path, k)),
            "--name",
            "adder",
            "--artifact-store",
            f"file://{store_dir}",
        )
    _cli(build, url, "promote", "adder", "1")
    stored = store_dir / "adder" / "2" / "model.onnx"
    _save_onnx(stored, adder_model(5.0))  # a valid model, but not the registered bytes

    cache = tmp_path / "cache"
    with (
        testing.run(cache, registry_url=url, artifact_store=f"file://{store_dir}", watch_interval=INTERVAL) as srv,
        httpx.Client(base_url=srv.http_url) as client,
    ):
        assert _version(client.post("/v2/models/adder/infer", json=BODY)) == 1
        _cli(build, url, "promote", "adder", "2")

        def index() -> dict[str, dict[str, str]]:
            rows = client.post("/v2/repository/index", json={}).json()
            return {row["version"]: row for row in rows if row["name"] == "adder"}

        _wait(lambda: index().get("2", {}).get("state") == "FAILED", index)
        reason = index()["2"]["reason"]
        assert "cannot fetch it from the artifact store" in reason and "checksum mismatch: model.onnx changed" in reason
        assert not (cache / "adder" / "2").exists()
        for _ in range(20):  # version 1 keeps serving; version 2's altered bytes never answer
            assert _version(client.post("/v2/models/adder/infer", json=BODY)) == 1
        refused = client.post("/v2/models/adder/versions/2/infer", json=BODY)
        assert refused.status_code == 503 and "checksum mismatch" in refused.json()["error"], refused.text

        shutil.copyfile(build / "adder" / "2" / "model.onnx", stored)  # the registered bytes are back
        _wait(lambda: client.post("/v2/models/adder/infer", json=BODY).json().get("model_version") == "2", index)
        assert _version(client.post("/v2/models/adder/infer", json=BODY)) == 2

    with RegistryStore(url) as store:
        failed = [e for e in store.history("adder") if e.action is AuditAction.LOAD_FAILED]
        assert failed and all(e.version == 2 and "checksum mismatch" in e.reason for e in failed)


def test_an_artifact_store_needs_the_registry(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--artifact-store", "file:///nowhere"])
    assert result.exit_code == 2 and "artifact_store needs the registry" in result.output, result.output


def test_a_failed_publish_leaves_the_version_registered_and_publish_completes_it(tmp_path: Path) -> None:
    """Registration records first, then publishes (core/registration.py says why): a store that
    fails leaves a registered, unpublished version, and ``registry publish`` finishes the job."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    build = tmp_path / "build"
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store's directory should be")
    where = ["registry", "--repository", str(build), "--url", url, "--actor", ACTOR]
    failed = CliRunner().invoke(
        main,
        [*where, "register", str(_artifact(tmp_path, 1)), "--name", "adder", "--artifact-store", f"file://{blocked}"],
    )
    assert failed.exit_code == 1, failed.output
    assert "'adder' version 1 is registered (stage none) but not published" in failed.output
    assert "modelserve registry publish adder 1" in failed.output
    with RegistryStore(url) as store:
        assert [r.version for r in store.versions("adder")] == [1]

    store_dir = tmp_path / "store"
    env = {"MODELSERVE_ARTIFACT_STORE": f"file://{store_dir}"}
    for _ in range(2):  # the second time, the version is already published: nothing to do
        done = CliRunner().invoke(main, [*where, "publish", "adder", "1"], env=env)
        assert done.exit_code == 0 and "published adder version 1" in done.output, done.output
    assert sorted(p.name for p in (store_dir / "adder" / "1").iterdir()) == [".modelserve-published.json", "model.onnx"]


def test_a_new_replica_creates_its_cache_and_starts_with_nothing_in_production(tmp_path: Path) -> None:
    cache = tmp_path / "new" / "cache"
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with (
        testing.run(cache, registry_url=url, artifact_store=f"file://{tmp_path / 'store'}") as srv,
        httpx.Client(base_url=srv.http_url) as client,
    ):
        assert client.get("/v2/health/ready").status_code == 200
        assert client.post("/v2/repository/index", json={}).json() == []
    assert cache.is_dir()
