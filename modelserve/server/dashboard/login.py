"""Logging in to the dashboard when auth is on (issue #12): a browser cannot send a key header.

- ``GET /ui/login``: a form taking an API key. ``POST /ui/login`` checks it with the
  Authenticator and sets a session cookie (``sessions.py``): ``HttpOnly``, ``SameSite=Strict``,
  ``Path=/ui``, ``Secure`` over TLS, ``Max-Age`` 8 h; then 303 to ``/ui``. A wrong key: the form
  again, 401.
- ``POST /ui/logout``: ends the session, clears the cookie, 303 to ``/ui/login``.
- Every other dashboard route is guarded here rather than by the HTTP app, because the app knows
  only key headers: a request with a key header is checked as before (401, 403, 429); one without
  is checked by its session cookie. A page without either is sent (303) to ``/ui/login``; a
  fragment, JSON or action endpoint answers 401.

The cookie is read by this module only, for ``/ui`` routes: the inference API never accepts it,
so a request another site makes a browser send cannot ride the session (and ``SameSite=Strict``
keeps the browser from sending it on one anyway). Actions also keep needing the ``HX-Request``
header (``roles.py``). A login form posted from another origin (its ``Origin`` header names
another host) is refused, so a site cannot log a browser in with the site's own key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from modelserve.errors import Forbidden, InvalidInput, Unauthenticated
from modelserve.server.auth import IDENTITY, INFER, Authenticator, token_from
from modelserve.server.dashboard.render import Renderer
from modelserve.server.dashboard.sessions import Sessions
from modelserve.server.http.app import Headers, Reply, Request, Route

COOKIE = "modelserve_session"
LOGIN = "/ui/login"
Handler = Callable[[Request], Awaitable[Reply]]
_NO_STORE = (b"cache-control", b"no-store")
_LOGIN_CSP = b"default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'"


class Login:
    def __init__(self, auth: Authenticator, render: Renderer, form: Callable[[bytes], dict[str, str]]) -> None:
        self._auth = auth
        self._render = render
        self._form = form
        self.sessions = Sessions()

    def routes(self) -> list[Route]:
        return [
            Route(LOGIN, {"GET": self.login_page, "POST": self.login}, role="public"),
            Route(r"/ui/logout", {"POST": self.logout}, role="public"),
        ]

    def guard(self, handler: Handler, needed: str, page: bool) -> Handler:
        """``handler`` behind the dashboard's check: a key header or a session with role ``needed``.
        ``page``: a page, whose unauthenticated request is sent to the login page (303)."""

        async def guarded(request: Request) -> Reply:
            try:
                self.authenticate(request, needed)
            except Unauthenticated:
                if page:
                    return _redirect(LOGIN)
                raise
            return await handler(request)

        return guarded

    def authenticate(self, request: Request, needed: str) -> None:
        """Record the caller's identity in the request's scope (what ``roles.py`` reads). Raises
        Unauthenticated, Forbidden or RateLimited."""
        token = token_from((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"])
        if token is not None:
            request.scope[IDENTITY] = self._auth.check(token, needed)
            return
        session_id = _cookie(request, COOKIE)
        key_id = None if session_id is None else self.sessions.key_id(session_id)
        if session_id is None or key_id is None:
            raise Unauthenticated(f"log in at {LOGIN}, or send an API key: Authorization: Bearer <token>")
        try:
            request.scope[IDENTITY] = self._auth.check_key(key_id, needed)
        except Unauthenticated:
            self.sessions.end(session_id)  # the key was revoked or removed: so is the session
            raise

    # -- routes ----------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Reply:
        return self._page()

    async def login(self, request: Request) -> Reply:
        """Check the form's ``key``; on success a session cookie and 303 to /ui."""
        _same_origin(request)
        token = self._form(request.body).get("key", "").strip()
        try:
            identity = self._auth.check(token or None, INFER)
        except Unauthenticated:
            return self._page("That API key is not valid (unknown, malformed or revoked).", status=401)
        assert identity is not None  # INFER is not public
        session_id = self.sessions.start(identity.key_id)
        cookie = f"{COOKIE}={session_id}; Path=/ui; Max-Age={int(self.sessions.ttl_s)}; HttpOnly; SameSite=Strict"
        if request.scope.get("scheme") == "https":
            cookie += "; Secure"
        return _redirect("/ui", [(b"set-cookie", cookie.encode("latin-1"))])

    async def logout(self, request: Request) -> Reply:
        session_id = _cookie(request, COOKIE)
        if session_id is not None:
            self.sessions.end(session_id)
        cookie = f"{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict"
        if request.scope.get("scheme") == "https":
            cookie += "; Secure"
        return _redirect(LOGIN, [(b"set-cookie", cookie.encode("latin-1"))])

    def _page(self, error: str = "", status: int = 200) -> Reply:
        body = self._render("login.html", error=error, admin=False, login=True).encode("utf-8")
        headers: Headers = [(b"content-type", b"text/html; charset=utf-8"), _NO_STORE]
        return status, body, [*headers, (b"content-security-policy", _LOGIN_CSP)]


def _redirect(location: str, extra: Headers | None = None) -> Reply:
    return 303, b"", [(b"location", location.encode("latin-1")), _NO_STORE, *(extra or [])]


def _cookie(request: Request, name: str) -> str | None:
    """The value of cookie ``name`` (the first, if sent twice), None when absent or empty."""
    header = request.header("cookie")
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            return value
    return None


def _same_origin(request: Request) -> None:
    """Refuse a form posted from another origin (browsers send ``Origin`` with every POST)."""
    origin = request.header("origin")
    if origin is None:
        return  # not a browser (curl, tests): nothing to forge
    host = request.header("host")
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        raise InvalidInput(f"header Origin {origin!r} is not a URL") from None
    if origin == "null" or host is None or netloc != host:
        raise Forbidden(f"the login form must be posted from this server's own pages, not from {origin!r}")
