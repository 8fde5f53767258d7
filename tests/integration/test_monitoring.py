"""Drift and outlier monitoring on a real server: a profile built from training data by the CLI,
traffic from the training distribution (no alarm), then shifted traffic (an alarm naming the
shifted feature), and outlier scores on request."""

from __future__ import annotations

import logging
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
from modelserve.repository.registry import RegistryStore, default_url

FEATURES = ["a", "b", "c", "d"]
MEAN = np.array([1.0, -2.0, 0.5, 10.0])
SCALE = np.array([1.0, 0.5, 2.0, 3.0])
WINDOW = {"window": 300, "min_rows": 200, "check_every": 100, "p_value": 0.01, "min_interval_s": 0}


def rows(rng: np.random.Generator, n: int, shift: dict[int, float] | None = None) -> np.ndarray:
    x = MEAN + SCALE * rng.standard_normal((n, len(FEATURES)))
    for column, sds in (shift or {}).items():
        x[:, column] += sds * SCALE[column]
    return x


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("monitored")
    rng = np.random.default_rng(0)
    x = rows(rng, 5000)
    y = (x[:, 0] + x[:, 2] > 1.5).astype(int)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    (root / "scorer" / "1").mkdir(parents=True)
    sio.dump(model, root / "scorer" / "1" / "model.skops")
    (root / "scorer" / "config.yaml").write_text(yaml.safe_dump({"monitoring": WINDOW}))
    pd.DataFrame(x, columns=FEATURES).to_parquet(root / "train.parquet")
    result = CliRunner().invoke(
        main, ["monitor", "profile", "-r", str(root), "--model", "scorer", "--data", str(root / "train.parquet")]
    )
    assert result.exit_code == 0, result.output
    assert "scorer version 1: profile of 5000 rows stored" in result.output
    return root


def send(client: httpx.Client, x: np.ndarray, per_request: int = 10, **parameters: Any) -> list[dict[str, Any]]:
    answers = []
    for start in range(0, len(x), per_request):
        batch = x[start : start + per_request]
        body: dict[str, Any] = {
            "inputs": [
                {"name": "input", "datatype": "FP64", "shape": list(batch.shape), "data": batch.ravel().tolist()}
            ]
        }
        if parameters:
            body["parameters"] = parameters
        r = client.post("/v2/models/scorer/infer", json=body)
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def status(srv: testing.run, client: httpx.Client) -> dict[str, Any]:
    assert srv.server.monitoring is not None and srv.server.monitoring.wait_idle()
    doc: dict[str, Any] = client.get("/v2/models/scorer/monitoring").json()
    (version,) = doc["versions"]
    return dict(version)


def test_the_profile_is_stored_with_the_version_and_audited(repo: Path) -> None:
    with RegistryStore(default_url(repo)) as store:
        record = store.profile("scorer", 1)
        actions = [e.action for e in store.history("scorer")]
    assert record is not None and record.source == "train.parquet"
    assert "profile" in actions


def test_reference_traffic_raises_no_alarm_and_shifted_traffic_names_the_feature(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(42)
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        for _ in range(10):  # checks on overlapping windows of the training distribution
            send(client, rows(rng, 100))
            status(srv, client)  # lets the monitor take each hundred rows in before the next
        calm = status(srv, client)
        assert calm["rows"] == 1000 and calm["checks"] == 9 and calm["drift"] is False, calm["report"]
        with caplog.at_level(logging.INFO, logger="modelserve.monitoring.service"):
            shifted = rows(rng, 400, shift={2: 1.0})  # feature c moves by one standard deviation
            for sent in range(0, 400, 50):
                send(client, shifted[sent : sent + 50])
                if status(srv, client)["drift"]:
                    break
            alarm = status(srv, client)
        metrics = client.get("/metrics").text
        cli = CliRunner().invoke(main, ["monitor", "status", "scorer", "--url", srv.http_url])
        page = client.get("/ui/api/models/scorer/state").text  # the dashboard's drift section
    assert alarm["drift"] is True, alarm["report"]
    assert sent + 50 <= 300, f"drift found only after {sent + 50} shifted rows"
    report = alarm["report"]
    assert report["drifted_features"] == ["c"]
    assert report["features"]["c"]["adjusted_p_value"] < 0.01
    assert all(not report["features"][f]["drifted"] for f in ("a", "b", "d"))
    events = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "drift_detected"]
    assert len(events) == 1 and events[0].fields["features"] == ["c"]  # type: ignore[attr-defined]
    assert 'modelserve_drift_detected{model="scorer",version="1"} 1.0' in metrics
    assert 'modelserve_drift_pvalue{feature="c",model="scorer",version="1"}' in metrics
    assert cli.exit_code == 0 and "DRIFT" in cli.output and "\n  c " in cli.output
    shown = report["distributions"]["features"]["c"]  # training vs live share per bin
    assert len(shown["bins"]) == len(shown["reference"]) == len(shown["live"]) == 10
    assert abs(sum(shown["live"]) - 1) < 1e-9 and shown["live"][-1] > 2 * shown["reference"][-1]  # moved up
    assert page.count('data-testid="distribution"') == 4  # one per feature; c's is open
    assert '<details class="distribution" data-testid="distribution" open>\n<summary>c: training' in page


def test_outlier_scores_flag_injected_outliers_on_request(repo: Path) -> None:
    rng = np.random.default_rng(7)
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        normal = send(client, rows(rng, 50), per_request=1, outlier_score=True)
        far = rows(rng, 5)
        far[:, 1] += 12 * SCALE[1]  # twelve standard deviations out on one feature
        injected = send(client, far, per_request=1, outlier_score=True)
        plain = send(client, rows(rng, 1), per_request=1)  # not asked: not computed
        counted = status(srv, client)["outliers"]
    flagged = [a["parameters"]["outlier"] for a in normal]
    assert sum(flagged) <= 1  # 0.999 quantile of the reference: at most a rare normal row
    assert all(a["parameters"]["outlier"] for a in injected)
    assert min(a["parameters"]["outlier_score"] for a in injected) > max(
        a["parameters"]["outlier_score"] for a in normal
    )
    assert "outlier_score" not in plain[0].get("parameters", {})
    assert counted >= 5  # every row is scored in the background too


def test_registering_with_training_data_stores_the_profile(tmp_path: Path, repo: Path) -> None:
    target = tmp_path / "registered"
    target.mkdir()
    result = CliRunner().invoke(
        main,
        [
            "registry", "-r", str(target), "--actor", "ann@ci", "register", str(repo / "scorer" / "1" / "model.skops"),
            "--name", "scorer", "--profile-data", str(repo / "train.parquet"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stored the reference profile of 'scorer' version 1 (5000 rows of train.parquet)" in result.output
    with RegistryStore(default_url(target)) as store:
        record = store.profile("scorer", 1)
        audit = [(e.action, e.actor) for e in store.history("scorer")]
    assert record is not None and record.profile["rows"] == 5000
    assert audit == [("register", "ann@ci"), ("profile", "ann@ci")]


def test_a_profiled_model_is_explained_against_its_reference_rows(repo: Path) -> None:
    x = rows(np.random.default_rng(3), 2)
    body = {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 4], "data": x.ravel().tolist()}],
        "parameters": {"output": "probabilities"},
    }
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url, timeout=60) as client:
        explained = client.post("/v2/models/scorer/explain", json=body)
        served = client.post("/v2/models/scorer/infer", json={"inputs": body["inputs"]})
    assert explained.status_code == 200, explained.text
    doc = explained.json()
    assert doc["explainer"] == "exact" and doc["features"] == ["input[0]", "input[1]", "input[2]", "input[3]"]
    probabilities = np.array(next(o for o in served.json()["outputs"] if o["name"] == "probabilities")["data"])
    attributions = np.array(doc["attributions"])  # [rows][classes][features]
    np.testing.assert_allclose(
        np.array(doc["base_values"]) + attributions.sum(axis=2), probabilities.reshape(2, -1), rtol=1e-6, atol=1e-9
    )
    # the model reads features a and c only through their sum: b and d get (nearly) nothing
    assert np.abs(attributions[:, :, [1, 3]]).max() < 0.05 * np.abs(attributions[:, :, [0, 2]]).max()
