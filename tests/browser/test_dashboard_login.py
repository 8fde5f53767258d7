"""Logging in to the dashboard in a real browser (Chromium through Playwright) when auth is on:
an unauthenticated visit lands on the login page, a wrong key is refused there, an admin key
shows the controls, and logging out sends the browser back to the login page for good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelserve import testing
from modelserve.repository.registry import RegistryStore, default_url
from tests.fixtures.dashboard import directory_repo


def test_admin_logs_in_sees_the_controls_and_logs_out(tmp_path: Path, page: Any) -> None:
    repo = directory_repo(tmp_path)
    with RegistryStore(default_url(repo)) as store:
        _, token = store.create_key("operator", "admin", actor="test")
    with testing.run(repo, control_api=True, auth=True) as srv:
        page.goto(f"{srv.http_url}/ui/models/adder")
        page.wait_for_url("**/ui/login")
        page.fill("input[name=key]", token[:-2] + "xx")
        page.click("button[data-action=login]")
        assert "not valid" in page.locator("[data-testid=login-error]").inner_text()

        page.fill("input[name=key]", token)
        page.click("button[data-action=login]")
        page.wait_for_url("**/ui")
        assert page.locator("[data-testid=role]").inner_text() == "admin"
        page.wait_for_selector("tr[data-model=adder] [data-state=READY]")  # the polled table loads with the cookie
        cookie = next(c for c in page.context.cookies() if c["name"] == "modelserve_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
        assert page.evaluate("() => document.cookie") == ""  # not readable by scripts

        page.click("tr[data-model=adder] a")
        page.wait_for_url("**/ui/models/adder")
        assert page.locator("[data-testid=actions] button[data-action=unload]").count() == 1
        # the inference API does not take the session, even from the dashboard's own origin
        status = page.evaluate("() => fetch('/v2/models/adder', {credentials: 'include'}).then(r => r.status)")
        assert status == 401

        page.click("[data-testid=logout]")
        page.wait_for_url("**/ui/login")
        assert not [c for c in page.context.cookies() if c["name"] == "modelserve_session"]
        page.goto(f"{srv.http_url}/ui")
        page.wait_for_url("**/ui/login")
        assert page.locator("form[data-testid=login]").count() == 1
