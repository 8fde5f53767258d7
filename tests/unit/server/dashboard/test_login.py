"""The login endpoints without sockets: the cookie's flags over TLS and plain HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

from modelserve.config import apikeys
from modelserve.server.auth import Authenticator
from modelserve.server.dashboard.endpoints import _form
from modelserve.server.dashboard.login import Login
from modelserve.server.dashboard.render import Renderer
from modelserve.server.http.app import Request
from tests.unit.server.test_auth_ratelimit import Key


def _login(scheme: str) -> tuple[int, dict[bytes, bytes]]:
    key_id, token = apikeys.new_token()
    _, salt, hashed = apikeys.hash_token(token)
    login = Login(Authenticator(lambda: [Key(key_id, "ops", "admin", salt, hashed)]), Renderer(), _form)
    scope: dict[str, Any] = {"scheme": scheme, "headers": [(b"host", b"example.test")]}
    status, _, headers = asyncio.run(login.login(Request(scope, {}, f"key={token}".encode())))
    return status, dict(headers)


def test_the_cookie_is_secure_over_tls_only() -> None:
    status, headers = _login("https")
    assert status == 303 and headers[b"set-cookie"].endswith(b"; Secure")
    assert b"HttpOnly" in headers[b"set-cookie"] and b"SameSite=Strict" in headers[b"set-cookie"]
    status, headers = _login("http")
    assert status == 303 and b"Secure" not in headers[b"set-cookie"]
