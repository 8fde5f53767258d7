"""The dashboard's pages, fragments, JSON and actions against a real server (the browser tests in
tests/browser/ drive the same pages through Chromium)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelserve import testing
from modelserve.repository.registry import AuditAction, RegistryStore, default_url
from tests.fixtures.dashboard import ADDER_BODY, directory_repo, registry_repo

HX = {"hx-request": "true"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return directory_repo(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="module")
def readonly(repo: Path) -> Iterator[httpx.Client]:
    """The control API off: nobody has the admin role."""
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url, timeout=30) as client:
        yield client


def _series_points(client: httpx.Client, model: str, want: int = 2) -> dict[str, list[float | None]]:
    """The model's chart series once it has ``want`` points (the sampler samples every second)."""
    deadline = time.monotonic() + 15
    while True:
        client.post(f"/v2/models/{model}/infer", json=ADDER_BODY)
        doc: dict[str, list[float | None]] = client.get(f"/ui/api/models/{model}/series").json()
        if len(doc["t"]) >= want or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


def test_overview_lists_every_model_with_its_state_and_escapes_reasons(readonly: httpx.Client) -> None:
    page = readonly.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert 'data-model="adder"' in html and 'data-model="identity"' not in html
    assert 'data-version="1" data-state="READY"' in html and 'data-version="2" data-state="READY"' in html
    table = readonly.get("/ui/api/overview").text
    broken = table[table.index('data-model="broken"') :]
    assert 'data-state="FAILED"' in broken[: broken.index("</tr>")]
    assert "<script>alert(1)</script>" not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert 'href="/ui/static/' not in table  # a fragment: no page around it
    assert "read-only" in html and 'data-action="unload"' not in readonly.get("/ui/models/adder").text


def test_series_have_rates_and_latencies_from_live_traffic(readonly: httpx.Client) -> None:
    doc = _series_points(readonly, "adder")
    assert len(doc["t"]) >= 2, doc
    assert set(doc) >= {"t", "rps", "error_rate", "p50", "p95", "p99", "batch", "interval_s"}
    assert any(r and r > 0 for r in doc["rps"]) and any(p and p > 0 for p in doc["p99"])  # type: ignore[operator]
    assert readonly.get("/ui/api/models/nope/series").status_code == 404


def test_model_page_shows_versions_traffic_and_a_try_it_body(readonly: httpx.Client) -> None:
    html = readonly.get("/ui/models/adder").text
    assert 'data-chart="latency"' in html and "Policy <strong>split</strong>" in html
    assert "&#34;name&#34;: &#34;x&#34;" in html  # the try-it body, from the signature, escaped
    assert "serves a directory, not the registry" in html
    assert readonly.get("/ui/models/nope").status_code == 404
    assert readonly.get("/ui/models/..%2Fetc").status_code in (400, 404)


def test_static_files_are_cached_and_only_the_vendored_ones(readonly: httpx.Client) -> None:
    for name, kind in [("htmx.min.js", "text/javascript"), ("uPlot.min.css", "text/css")]:
        r = readonly.get(f"/ui/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == kind
        assert r.headers["cache-control"] == "public, max-age=86400"
    assert readonly.get("/ui/static/..%2Fviews.py").status_code == 404
    assert readonly.get("/ui/static/nope.js").status_code == 404


@pytest.mark.parametrize("action", ["load", "unload", "rollback", "traffic"])
def test_actions_are_refused_without_the_admin_role(readonly: httpx.Client, action: str) -> None:
    r = readonly.post(f"/ui/api/models/adder/{action}", headers=HX, content=b"weight.one=5")
    assert r.status_code == 403 and "control-api" in r.json()["error"]
    assert readonly.get("/v2/models/adder/ready").status_code == 200


def test_admin_unloads_loads_and_changes_shares_audited(repo: Path) -> None:
    with testing.run(repo, control_api=True) as srv, httpx.Client(base_url=srv.http_url, timeout=30) as client:
        assert 'data-action="unload"' in client.get("/ui/models/adder").text
        assert "no production stage to roll back" in client.get("/ui/models/adder").text
        # a cross-site form cannot send HX-Request: refused before anything happens
        assert client.post("/ui/api/models/adder/unload").status_code == 400
        r = client.post("/ui/api/models/adder/unload", headers=HX, content=b"reason=maintenance")
        assert r.status_code == 200 and "unloaded" in r.text
        assert client.get("/v2/models/adder/ready").status_code == 503
        assert client.post("/ui/api/models/adder/load", headers=HX).status_code == 200
        assert client.get("/v2/models/adder/ready").status_code == 200
        r = client.post(
            "/ui/api/models/adder/traffic", headers=HX, content=b"weight.one=0&weight.two=1&reason=all+to+2"
        )
        assert r.status_code == 200, r.text
        variants = client.get("/v2/models/adder/traffic").json()["policy"]["variants"]
        assert [v["weight"] for v in variants] == [0, 1]
        assert {client.post("/v2/models/adder/infer", json=ADDER_BODY).json()["model_version"] for _ in range(10)} == {
            "2"
        }
        bad = client.post("/ui/api/models/adder/traffic", headers=HX, content=b"weight.one=abc")
        assert bad.status_code == 400 and "not a number" in bad.json()["error"]
        rollback = client.post("/ui/api/models/adder/rollback", headers=HX)
        assert rollback.status_code == 503 and "--registry" in rollback.json()["error"]
    with RegistryStore(default_url(repo)) as store:
        done = [(e.action, e.actor, e.reason) for e in store.history("adder")]
    assert (AuditAction.UNLOAD, "dashboard", "maintenance") in done
    assert (AuditAction.LOAD, "dashboard", "") in done
    assert (AuditAction.TRAFFIC, "dashboard", "all to 2") in done


def test_rollback_from_the_registry_changes_the_served_version(tmp_path: Path) -> None:
    repo = registry_repo(tmp_path)
    with (
        testing.run(repo, control_api=True, registry=True) as srv,
        httpx.Client(base_url=srv.http_url, timeout=30) as client,
    ):
        assert client.post("/v2/models/adder/infer", json=ADDER_BODY).json()["model_version"] == "2"
        html = client.get("/ui/models/adder").text
        assert 'data-action="rollback"' in html and "release 2" in html  # the audit history
        r = client.post("/ui/api/models/adder/rollback", headers=HX, content=b"reason=bad+release")
        assert r.status_code == 200 and "version 1 again" in r.text
        assert client.post("/v2/models/adder/infer", json=ADDER_BODY).json()["model_version"] == "1"
        state = client.get("/ui/api/models/adder/state").text
        assert "bad release" in state and "rollback" in state
    with RegistryStore(default_url(repo)) as store:
        rollbacks = [e for e in store.history("adder") if e.action is AuditAction.ROLLBACK]
    assert [(e.actor, e.reason, e.version) for e in rollbacks] == [("dashboard", "bad release", 1)]


def test_promote_from_the_registry_changes_the_served_version(tmp_path: Path) -> None:
    repo = registry_repo(tmp_path)  # version 2 in production, version 1 archived
    with (
        testing.run(repo, control_api=True, registry=True) as srv,
        httpx.Client(base_url=srv.http_url, timeout=30) as client,
    ):
        assert 'data-action="promote"' in client.get("/ui/models/adder").text
        bad = client.post("/ui/api/models/adder/promote", headers=HX, content=b"version=one&stage=production")
        assert bad.status_code == 400 and "'one'" in bad.json()["error"]
        illegal = client.post("/ui/api/models/adder/promote", headers=HX, content=b"version=1&stage=staging")
        assert illegal.status_code == 400 and "archived" in illegal.json()["error"]
        r = client.post("/ui/api/models/adder/promote", headers=HX, content=b"version=1&stage=production&reason=back")
        assert r.status_code == 200 and "version 1 is in production" in r.text
        assert client.post("/v2/models/adder/infer", json=ADDER_BODY).json()["model_version"] == "1"
    with RegistryStore(default_url(repo)) as store:
        promoted = [e for e in store.history("adder") if e.action is AuditAction.PROMOTE and e.actor == "dashboard"]
    assert [(e.version, e.reason) for e in promoted] == [(1, "back")]


def test_promote_is_refused_to_a_non_admin(tmp_path: Path) -> None:
    with (
        testing.run(registry_repo(tmp_path), registry=True) as srv,
        httpx.Client(base_url=srv.http_url, timeout=30) as client,
    ):
        assert 'data-action="promote"' not in client.get("/ui/models/adder").text
        refused = client.post("/ui/api/models/adder/promote", headers=HX, content=b"version=1&stage=production")
        assert refused.status_code == 403
