"""API keys against a real server (issue #12): 401 vs 403 over REST, gRPC status codes, the
dashboard's admin role and actor, revocation, and the refusal of an open admin API off loopback."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from click.testing import CliRunner
from tritonclient.utils import InferenceServerException

from modelserve import testing
from modelserve.cli.main import main
from modelserve.config.server import ServerConfig
from modelserve.errors import ConfigError
from modelserve.repository.registry import AuditAction, RegistryStore, default_url
from tests.fixtures.dashboard import ADDER_BODY, directory_repo

HX = {"hx-request": "true"}
POLICY = {"policy": {"policy": "split", "variants": [{"name": "two", "version": 2}]}}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return directory_repo(tmp_path_factory.mktemp("auth"))


@pytest.fixture(scope="module")
def tokens(repo: Path) -> dict[str, str]:
    with RegistryStore(default_url(repo)) as store:
        return {role: store.create_key(f"{role}-key", role, actor="test")[1] for role in ("infer", "admin")}


@pytest.fixture(scope="module")
def srv(repo: Path, tokens: dict[str, str]) -> Iterator[testing.run]:
    with testing.run(repo, control_api=True, auth=True) as running:
        yield running


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_rest_401_and_403(srv: testing.run, tokens: dict[str, str]) -> None:
    with httpx.Client(base_url=srv.http_url, timeout=30) as c:
        assert c.get("/v2/health/live").status_code == 200 and c.get("/v2/health/ready").status_code == 200
        missing = c.post("/v2/models/adder/infer", json=ADDER_BODY)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        bad = c.post("/v2/models/adder/infer", json=ADDER_BODY, headers=_bearer(tokens["infer"] + "x"))
        assert bad.status_code == 401 and "not valid" in bad.json()["error"]
        assert c.get("/metrics").status_code == 401
        infer = _bearer(tokens["infer"])
        assert c.post("/v2/models/adder/infer", json=ADDER_BODY, headers=infer).status_code == 200
        assert (
            c.post("/v2/models/adder/infer", json=ADDER_BODY, headers={"x-api-key": tokens["infer"]}).status_code == 200
        )
        assert c.get("/metrics", headers=infer).status_code == 200
        assert c.get("/v2/models/adder/traffic", headers=infer).status_code == 200
        refused = c.post("/v2/repository/models/adder/load", headers=infer)
        assert refused.status_code == 403 and "role infer" in refused.json()["error"]
        assert c.put("/v2/models/adder/traffic", json=POLICY, headers=infer).status_code == 403
        admin = _bearer(tokens["admin"])
        assert c.post("/v2/repository/models/adder/load", headers=admin).status_code == 200
        assert c.put("/v2/models/adder/traffic", json=POLICY, headers=admin).status_code == 200
        assert c.delete("/v2/models/adder/traffic", headers=admin).status_code == 200


def test_grpc_status_codes(srv: testing.run, tokens: dict[str, str]) -> None:
    client = tg.InferenceServerClient(srv.grpc_target)
    assert client.is_server_live()
    with pytest.raises(InferenceServerException) as missing:
        client.is_model_ready("adder")
    assert missing.value.status() == "StatusCode.UNAUTHENTICATED"
    assert client.is_model_ready("adder", headers=_bearer(tokens["infer"]))
    with pytest.raises(InferenceServerException) as denied:
        client.load_model("adder", headers=_bearer(tokens["infer"]))
    assert denied.value.status() == "StatusCode.PERMISSION_DENIED"
    client.load_model("adder", headers=_bearer(tokens["admin"]))
    client.close()


def test_dashboard_actions_need_an_admin_key_and_audit_its_name(
    srv: testing.run, repo: Path, tokens: dict[str, str]
) -> None:
    with httpx.Client(base_url=srv.http_url, timeout=30) as c:
        refused = c.post("/ui/api/models/adder/load", headers={**HX, **_bearer(tokens["infer"])})
        assert refused.status_code == 403
        done = c.post("/ui/api/models/adder/load", headers={**HX, **_bearer(tokens["admin"])}, content=b"reason=auth")
        assert done.status_code == 200, done.text
    with RegistryStore(default_url(repo)) as store:
        loads = [(e.actor, e.reason) for e in store.history("adder") if e.action is AuditAction.LOAD]
    assert ("admin-key", "auth") in loads


def test_a_revoked_key_stops_working(repo: Path, srv: testing.run) -> None:
    with RegistryStore(default_url(repo)) as store:
        key_id, token = store.create_key("short-lived", "infer", actor="test")
    with httpx.Client(base_url=srv.http_url, timeout=30) as c:
        assert c.post("/v2/models/adder/infer", json=ADDER_BODY, headers=_bearer(token)).status_code in (200, 401)
        deadline = time.monotonic() + 10  # a new key is seen within the refresh interval (2 s)
        while c.post("/v2/models/adder/infer", json=ADDER_BODY, headers=_bearer(token)).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with RegistryStore(default_url(repo)) as store:
            store.revoke_key(key_id, actor="test")
        deadline = time.monotonic() + 10
        while c.post("/v2/models/adder/infer", json=ADDER_BODY, headers=_bearer(token)).status_code != 401:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_an_open_admin_api_off_loopback_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--allow-unauthenticated-admin"):
        ServerConfig(tmp_path, host="0.0.0.0", control_api=True)
    ServerConfig(tmp_path, host="0.0.0.0", control_api=True, auth=True)
    ServerConfig(tmp_path, host="0.0.0.0", control_api=True, allow_unauthenticated_admin=True)
    ServerConfig(tmp_path, host="::1", control_api=True)
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--host", "0.0.0.0", "--control-api", "on"])
    assert result.exit_code != 0 and "--allow-unauthenticated-admin" in result.output


def _stream_once(srv: testing.run, headers: dict[str, str] | None) -> tuple[object, object]:
    results: queue.Queue[tuple[object, object]] = queue.Queue()
    client = tg.InferenceServerClient(srv.grpc_target)
    client.start_stream(callback=lambda result, error: results.put((result, error)), headers=headers)
    try:
        x = tg.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
        # the server may refuse the stream before the request goes out: the callback then has the error
        with contextlib.suppress(InferenceServerException):
            client.async_stream_infer("adder", [x])
        return results.get(timeout=30)
    finally:
        client.stop_stream()
        client.close()


def test_grpc_stream_needs_a_key(srv: testing.run, tokens: dict[str, str]) -> None:
    result, error = _stream_once(srv, None)
    assert result is None and isinstance(error, InferenceServerException)
    assert error.status() == "StatusCode.UNAUTHENTICATED"
    result, error = _stream_once(srv, _bearer(tokens["infer"]))
    assert error is None and result is not None
