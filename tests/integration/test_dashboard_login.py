"""The dashboard's login when auth is on (issue #12), over HTTP with a real server: pages send an
unauthenticated browser to /ui/login (303), its fragments and actions answer 401; a login sets an
HttpOnly, SameSite=Strict session cookie scoped to /ui that the inference API never accepts;
logout and revoking the key end the session; actions keep needing an admin key and HX-Request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelserve import testing
from modelserve.repository.registry import RegistryStore, default_url
from tests.fixtures.dashboard import ADDER_BODY, directory_repo

HX = {"hx-request": "true"}
COOKIE = "modelserve_session"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return directory_repo(tmp_path_factory.mktemp("login"))


@pytest.fixture(scope="module")
def tokens(repo: Path) -> dict[str, str]:
    with RegistryStore(default_url(repo)) as store:
        return {role: store.create_key(f"{role}-key", role, actor="test")[1] for role in ("infer", "admin")}


@pytest.fixture(scope="module")
def srv(repo: Path, tokens: dict[str, str]) -> Iterator[testing.run]:
    with testing.run(repo, control_api=True, auth=True) as running:
        yield running


@pytest.fixture
def client(srv: testing.run) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.http_url, timeout=30, follow_redirects=False) as c:
        yield c


def _login(client: httpx.Client, token: str) -> dict[str, str]:
    """Log in; the Cookie header of the new session."""
    reply = client.post("/ui/login", data={"key": token})
    assert reply.status_code == 303 and reply.headers["location"] == "/ui", reply.text
    return {"cookie": f"{COOKIE}={reply.cookies[COOKIE]}"}


def test_without_a_session_pages_redirect_and_the_rest_is_401(client: httpx.Client, tokens: dict[str, str]) -> None:
    for page in ("/ui", "/ui/", "/ui/models/adder"):
        reply = client.get(page)
        assert reply.status_code == 303 and reply.headers["location"] == "/ui/login", page
    for path in ("/ui/api/overview", "/ui/api/models/adder/state", "/ui/api/models/adder/series"):
        assert client.get(path).status_code == 401, path
    assert client.post("/ui/api/models/adder/unload", headers=HX).status_code == 401
    assert client.get("/ui", headers={"cookie": f"{COOKIE}=forged"}).status_code == 303
    form = client.get("/ui/login")
    assert form.status_code == 200 and 'name="key"' in form.text and 'type="password"' in form.text
    assert client.get("/ui/static/htmx.min.js").status_code == 200  # vendored files need no login
    # a key header still works without a login, as before
    assert client.get("/ui", headers={"x-api-key": tokens["infer"]}).status_code == 200


def test_login_sets_a_strict_http_only_cookie_for_ui_only(client: httpx.Client, tokens: dict[str, str]) -> None:
    reply = client.post("/ui/login", data={"key": tokens["admin"]})
    assert reply.status_code == 303
    attributes = [part.strip() for part in reply.headers["set-cookie"].split(";")]
    assert attributes[0].startswith(f"{COOKIE}=") and len(attributes[0]) > len(COOKIE) + 40
    assert {"Path=/ui", "HttpOnly", "SameSite=Strict", "Max-Age=28800"} <= set(attributes)
    assert "Secure" not in attributes  # plain HTTP here; over TLS it is set (unit test)
    assert tokens["admin"] not in reply.headers["set-cookie"]
    session = {"cookie": attributes[0]}
    page = client.get("/ui", headers=session)
    assert page.status_code == 200 and 'data-testid="role">admin<' in page.text and "Log out" in page.text
    assert client.get("/ui/api/overview", headers=session).status_code == 200
    assert client.get("/ui/models/adder", headers=session).status_code == 200
    done = client.post("/ui/api/models/adder/load", headers={**session, **HX}, content=b"reason=session")
    assert done.status_code == 200, done.text
    assert client.post("/ui/api/models/adder/load", headers=session).status_code == 400  # no HX-Request
    # the session is not a credential anywhere but /ui
    assert client.post("/v2/models/adder/infer", json=ADDER_BODY, headers=session).status_code == 401
    assert client.post("/v2/repository/models/adder/load", headers=session).status_code == 401
    assert client.get("/metrics", headers=session).status_code == 401


def test_an_infer_key_session_is_read_only(client: httpx.Client, tokens: dict[str, str]) -> None:
    session = _login(client, tokens["infer"])
    page = client.get("/ui/models/adder", headers=session)
    assert page.status_code == 200 and 'data-testid="actions"' not in page.text
    refused = client.post("/ui/api/models/adder/unload", headers={**session, **HX})
    assert refused.status_code == 403 and "role infer" in refused.json()["error"]


def test_a_wrong_key_or_a_foreign_form_gets_no_session(client: httpx.Client, tokens: dict[str, str]) -> None:
    wrong = client.post("/ui/login", data={"key": tokens["admin"][:-2] + "xx"})
    assert wrong.status_code == 401 and "not valid" in wrong.text and "set-cookie" not in wrong.headers
    assert client.post("/ui/login", data={}).status_code == 401
    foreign = client.post("/ui/login", data={"key": tokens["admin"]}, headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    host = client.base_url.netloc.decode()
    assert (
        client.post("/ui/login", data={"key": tokens["admin"]}, headers={"origin": f"http://{host}"}).status_code == 303
    )


def test_logout_ends_the_session(client: httpx.Client, tokens: dict[str, str]) -> None:
    session = _login(client, tokens["admin"])
    assert client.get("/ui", headers=session).status_code == 200
    out = client.post("/ui/logout", headers=session)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/ui", headers=session).status_code == 303
    assert client.get("/ui/api/overview", headers=session).status_code == 401


def test_revoking_the_key_ends_its_sessions(client: httpx.Client, repo: Path) -> None:
    with RegistryStore(default_url(repo)) as store:
        key_id, token = store.create_key("operator", "admin", actor="test")
    deadline = time.monotonic() + 10  # a new key is seen within the refresh interval (2 s)
    while (reply := client.post("/ui/login", data={"key": token})).status_code != 303:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    session = {"cookie": f"{COOKIE}={reply.cookies[COOKIE]}"}
    assert client.get("/ui/api/overview", headers=session).status_code == 200
    with RegistryStore(default_url(repo)) as store:
        store.revoke_key(key_id, actor="test")
    deadline = time.monotonic() + 10
    while client.get("/ui/api/overview", headers=session).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.get("/ui", headers=session).status_code == 303


def test_without_auth_there_is_no_login(tmp_path: Path) -> None:
    with testing.run(directory_repo(tmp_path)) as srv, httpx.Client(base_url=srv.http_url) as c:
        reply = c.get("/ui/login", follow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"] == "/ui"
        assert c.get("/ui").status_code == 200
