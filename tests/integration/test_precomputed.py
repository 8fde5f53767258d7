"""Precomputed predictions end to end, on SQLite and on a real PostgreSQL: ``modelserve
precompute`` scores a Parquet file with a real model, and a real server answers v2 infer by key
and ``GET /v1/precomputed/{m}/{key}`` with the live model's outputs; a missing key is a 404; a
second precompute switches generations without any lookup seeing two versions."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from modelserve import testing
from modelserve.cli.main import main
from tests.fixtures.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures, used by name)

ROWS = 300


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'predictions.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def repo(tmp_path: Path, db_url: str) -> Path:
    root = tmp_path / "models"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 4))
    for version, column in ((1, 0), (2, 1)):  # two versions that disagree
        model = LogisticRegression(max_iter=500).fit(x, (x[:, column] > 0).astype(int))
        (root / "scorer" / str(version)).mkdir(parents=True)
        sio.dump(model, root / "scorer" / str(version) / "model.skops")
    (root / "scorer" / "config.yaml").write_text("version_policy: all\n")
    (root / "scored" / "1").mkdir(parents=True)
    spec = {"db": db_url, "table": "scores", "fallback": "none"}
    (root / "scored" / "1" / "precomputed.yaml").write_text(yaml.safe_dump(spec))
    rows = pd.DataFrame(rng.standard_normal((ROWS, 4)), columns=["a", "b", "c", "d"])
    rows.insert(0, "id", np.arange(1000, 1000 + ROWS))
    rows.to_parquet(tmp_path / "rows.parquet")
    return root


def precompute(repo: Path, db_url: str, version: int) -> None:
    args = ["precompute", "-r", str(repo), "-m", "scorer", "-v", str(version), "--input"]
    args += [str(repo.parent / "rows.parquet"), "--key-column", "id", "--db", db_url, "--table", "scores"]
    result = CliRunner().invoke(main, [*args, "--batch-rows", "64"])
    assert result.exit_code == 0, result.output
    assert f"scorer version {version}: {ROWS} rows stored" in result.output


def live(client: httpx.Client, version: int, x: np.ndarray) -> dict[str, list[Any]]:
    body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    r = client.post(f"/v2/models/scorer/versions/{version}/infer", json=body)
    assert r.status_code == 200, r.text
    return {o["name"]: o["data"] for o in r.json()["outputs"]}


def by_key(client: httpx.Client, keys: list[int]) -> dict[str, list[Any]]:
    body = {"inputs": [{"name": "key", "datatype": "INT64", "shape": [len(keys)], "data": keys}]}
    r = client.post("/v2/models/scored/infer", json=body)
    assert r.status_code == 200, r.text
    return {o["name"]: o["data"] for o in r.json()["outputs"]}


def test_round_trip_missing_key_and_atomic_refresh(repo: Path, db_url: str) -> None:
    precompute(repo, db_url, 1)
    table = pd.read_parquet(repo.parent / "rows.parquet")
    keys = table["id"].tolist()[:50]
    x = table[["a", "b", "c", "d"]].to_numpy()[:50]
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        want = {v: live(client, v, x) for v in (1, 2)}
        assert want[1] != want[2]
        got = by_key(client, keys)
        assert got["model_version"] == [1] * 50
        for name, values in want[1].items():
            assert np.allclose(got[name], values), name

        one = client.get(f"/v1/precomputed/scored/{keys[3]}")
        assert one.status_code == 200, one.text
        doc = one.json()
        assert doc["model"] == "scored" and doc["key"] == str(keys[3]) and doc["model_version"] == 1
        assert doc["computed_at"]
        width = len(want[1]["probabilities"]) // 50 if "probabilities" in want[1] else 1
        for name, values in want[1].items():
            row = values[3 * width : 4 * width] if isinstance(doc["outputs"][name], list) else values[3]
            assert np.allclose(doc["outputs"][name], row), name

        missing = client.get("/v1/precomputed/scored/7")
        assert missing.status_code == 404 and "7" in missing.json()["error"]
        r = client.post(
            "/v2/models/scored/infer",
            json={"inputs": [{"name": "key", "datatype": "INT64", "shape": [2], "data": [keys[0], 99]}]},
        )
        assert r.status_code == 404 and "99" in r.json()["error"]

        seen: list[tuple[int, bool]] = []
        stop = threading.Event()

        def lookups() -> None:
            while not stop.is_set():
                answer = by_key(client, keys)
                versions = set(answer["model_version"])
                assert len(versions) == 1, versions
                (version,) = versions
                matches = all(np.allclose(answer[n], v) for n, v in want[version].items())
                seen.append((version, matches))

        reader = threading.Thread(target=lookups)
        reader.start()
        try:
            precompute(repo, db_url, 2)
            deadline = threading.Event()
            deadline.wait(1.5)  # the runtime caches the pointer for a second
        finally:
            stop.set()
            reader.join(10)
        assert seen and all(matches for _, matches in seen)
        assert seen[0][0] == 1 and seen[-1][0] == 2
        assert by_key(client, keys)["model_version"] == [2] * 50
        metrics = client.get("/metrics").text
    assert 'model="scored"' in metrics


def test_a_missing_key_fails_only_its_own_request_among_concurrent_ones(repo: Path, db_url: str) -> None:
    precompute(repo, db_url, 1)
    keys = pd.read_parquet(repo.parent / "rows.parquet")["id"].tolist()[:40]
    # a batching window long enough that concurrent requests would share a call, if allowed to
    (repo / "scored" / "config.yaml").write_text("batching: {max_delay_ms: 50}\n")
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url) as client:

        def one(key: int) -> int:
            body = {"inputs": [{"name": "key", "datatype": "INT64", "shape": [1], "data": [key]}]}
            return client.post("/v2/models/scored/infer", json=body).status_code

        with ThreadPoolExecutor(8) as pool:  # concurrent requests, as a batcher would merge them
            statuses = list(pool.map(one, [k if i % 5 else 7 for i, k in enumerate(keys)]))
    assert statuses == [404 if i % 5 == 0 else 200 for i in range(len(keys))]
