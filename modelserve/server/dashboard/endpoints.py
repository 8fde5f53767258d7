"""The dashboard's routes: pages under ``/ui``, fragments and JSON under ``/ui/api``, vendored
static files under ``/ui/static``.

- ``GET /ui``: the overview; its table (``GET /ui/api/overview``, HTML) is polled every 2 s.
- ``GET /ui/models/{m}``: one model; its state (``GET /ui/api/models/{m}/state``, HTML) and its
  chart series (``GET /ui/api/models/{m}/series``, JSON columns) are polled every 2 s.
- ``POST /ui/api/models/{m}/load|unload|promote|rollback|traffic``: admin actions (roles.py), audited.
- With auth on, ``/ui/login`` and ``/ui/logout``, and every route above guarded by login.py (a key
  header or a session cookie) instead of the HTTP app, which knows key headers only; the static
  files are public (vendored libraries and a style sheet).

Every dashboard request touches the sampler, which runs only while someone looks.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from modelserve.config.traffic import parse_traffic
from modelserve.core.manager import ModelManager
from modelserve.errors import ConfigError, InvalidInput, Unavailable
from modelserve.protocol.names import check_model_name
from modelserve.protocol.v2 import rest
from modelserve.routing.router import Router
from modelserve.server.auth import ADMIN, INFER, PUBLIC, Authenticator
from modelserve.server.dashboard.audit import Audit
from modelserve.server.dashboard.login import LOGIN, Login
from modelserve.server.dashboard.render import Renderer
from modelserve.server.dashboard.roles import Roles
from modelserve.server.dashboard.sampler import Sampler
from modelserve.server.dashboard.views import Views
from modelserve.server.http.app import JSON, Headers, Reply, Request, Route

log = logging.getLogger(__name__)

_MODEL = r"/ui(?:/api)?/models/(?P<model>[^/]+)"
HTML: Headers = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
STATIC = Path(__file__).parent / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".md": "text/markdown", ".LICENSE": "text/plain"}
# the page may load its own scripts, styles and data only: nothing from another origin
_CSP = b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"


class Dashboard:
    def __init__(
        self,
        manager: ModelManager,
        router: Router,
        views: Views,
        sampler: Sampler,
        roles: Roles,
        audit: Audit,
        auth: Authenticator | None = None,
    ) -> None:
        self._manager = manager
        self._router = router
        self._views = views
        self.sampler = sampler
        self._roles = roles
        self._audit = audit
        self._render = Renderer()
        self.login = None if auth is None else Login(auth, self._render, _form)
        self._static = {p.name: (p.read_bytes(), _content_type(p)) for p in STATIC.iterdir() if p.is_file()}

    def routes(self) -> list[Route]:
        # (pattern, method, handler, role, page)
        table = [
            (r"/ui/?", "GET", self.overview, INFER, True),
            (r"/ui/api/overview", "GET", self.overview_table, INFER, False),
            (r"/ui/models/(?P<model>[^/]+)", "GET", self.model_page, INFER, True),
            (_MODEL + r"/state", "GET", self.model_state, INFER, False),
            (_MODEL + r"/series", "GET", self.series, INFER, False),
            (_MODEL + r"/load", "POST", self.load, ADMIN, False),
            (_MODEL + r"/unload", "POST", self.unload, ADMIN, False),
            (_MODEL + r"/promote", "POST", self.promote, ADMIN, False),
            (_MODEL + r"/rollback", "POST", self.rollback, ADMIN, False),
            (_MODEL + r"/traffic", "POST", self.traffic, ADMIN, False),
        ]
        static = Route(r"/ui/static/(?P<file>[^/]+)", {"GET": self.static}, role=PUBLIC)
        login = self.login
        if login is None:  # auth off: the roles only matter to an app with auth (none here)
            routes = [Route(pattern, {method: handler}, role=role) for pattern, method, handler, role, _ in table]
            return [*routes, static, Route(LOGIN, {"GET": self.no_login})]
        guarded = [
            Route(pattern, {method: login.guard(handler, role, page)}, role=PUBLIC)
            for pattern, method, handler, role, page in table
        ]
        return [*guarded, static, *login.routes()]

    # -- pages -----------------------------------------------------------------------------

    async def overview(self, request: Request) -> Reply:
        self.sampler.touch()
        admin, logout = self._roles.is_admin(request), self.login is not None
        return _html(self._render("overview.html", rows=self._views.overview(), admin=admin, logout=logout))

    async def no_login(self, request: Request) -> Reply:
        """Auth off: there is nothing to log in to."""
        return 303, b"", [(b"location", b"/ui"), (b"cache-control", b"no-store")]

    async def overview_table(self, request: Request) -> Reply:
        self.sampler.touch()
        return _html(self._render("_overview_table.html", rows=self._views.overview()), page=False)

    async def model_page(self, request: Request) -> Reply:
        self.sampler.touch()
        name = self._name(request)
        context = await self._model_context(request, name)
        context["try_body"] = self._views.try_it(name)
        return _html(self._render("model.html", **context))

    async def model_state(self, request: Request) -> Reply:
        self.sampler.touch()
        context = await self._model_context(request, self._name(request))
        return _html(self._render("_model_state.html", **context), page=False)

    async def series(self, request: Request) -> Reply:
        self.sampler.touch()
        name = self._name(request)
        self._manager.model(name)  # ModelNotFound for an unknown name
        doc = {"model": name, "interval_s": self.sampler.interval_s, **self.sampler.series(name)}
        return 200, rest.dumps(doc), [*JSON, (b"cache-control", b"no-store")]

    async def static(self, request: Request) -> Reply:
        found = self._static.get(request.params["file"])
        if found is None:
            return 404, rest.encode_error(f"no static file {request.params['file']!r}"), JSON
        body, kind = found
        # vendored files change only with a modelserve release: a day in the browser cache is safe
        return 200, body, [(b"content-type", kind.encode()), (b"cache-control", b"public, max-age=86400")]

    async def _model_context(self, request: Request, name: str) -> dict[str, Any]:
        live = self._views.model(name)
        registry = await asyncio.to_thread(self._views.registry_details, name)
        admin = self._roles.is_admin(request)
        return {"model": live, "registry": registry, "admin": admin, "logout": self.login is not None}

    # -- actions ---------------------------------------------------------------------------

    async def load(self, request: Request) -> Reply:
        actor, name, form = self._action(request)
        await self._manager.load_model(name)
        await self._audit.record("load", name, actor, form.get("reason", ""))
        return self._done(f"model {name} loaded")

    async def unload(self, request: Request) -> Reply:
        actor, name, form = self._action(request)
        await self._manager.unload_model(name)
        await self._audit.record("unload", name, actor, form.get("reason", ""))
        return self._done(f"model {name} unloaded")

    async def promote(self, request: Request) -> Reply:
        """Move a registered version to a stage (form fields ``version``, ``stage``: production or
        staging), as ``modelserve registry promote`` does; the server then serves it at once."""
        actor, name, form = self._action(request)
        registry = self._views.registry
        if registry is None:
            raise Unavailable("promote needs a server that serves from the registry (serve --registry)")
        raw, stage = form.get("version", ""), form.get("stage", "production")
        if not raw.isdigit() or int(raw) < 1:
            raise InvalidInput(f"version to promote must be a positive integer, got {raw!r}")
        if stage not in ("production", "staging"):
            raise InvalidInput(f"stage must be production or staging, got {stage!r}")
        record = await asyncio.to_thread(
            registry.set_stage, name, int(raw), stage, actor=actor, reason=form.get("reason", "")
        )
        await self._manager.load_model(name)  # serve the new stage now, not at the next poll
        log.info("model %r version %s promoted to %s by %s", name, record.version, stage, actor)
        return self._done(f"model {name}: version {record.version} is in {stage}")

    async def rollback(self, request: Request) -> Reply:
        actor, name, form = self._action(request)
        registry = self._views.registry
        if registry is None:
            raise Unavailable("roll back needs a server that serves from the registry (serve --registry)")
        record = await asyncio.to_thread(registry.rollback, name, actor=actor, reason=form.get("reason", ""))
        await self._manager.load_model(name)  # serve the restored version now, not at the next poll
        log.info("model %r rolled back to version %s by %s", name, record.version, actor)
        return self._done(f"model {name}: production is version {record.version} again")

    async def traffic(self, request: Request) -> Reply:
        """New weights for the variants of a split policy: form fields ``weight.<variant>``."""
        actor, name, form = self._action(request)
        current = self._router.show(name)
        policy = current["policy"]
        if policy is None or policy.get("policy") != "split":
            raise InvalidInput(f"model {name!r} has no split policy; its shares cannot be changed here")
        for variant in policy["variants"]:
            raw = form.get(f"weight.{variant['name']}")
            if raw is not None:
                try:
                    variant["weight"] = float(raw)
                except ValueError:
                    raise InvalidInput(f"weight of variant {variant['name']!r}: {raw!r} is not a number") from None
        try:
            parsed = parse_traffic(policy, "dashboard")
        except ConfigError as exc:
            raise InvalidInput(exc.message) from None
        await self._router.set_policy(name, parsed, actor, form.get("reason", "") or "shares changed in the dashboard")
        shares = ", ".join(f"{v['name']}={v['weight']:g}" for v in policy["variants"])
        return self._done(f"model {name}: traffic shares set to {shares}")

    def _action(self, request: Request) -> tuple[str, str, dict[str, str]]:
        """Who acts (403 for a non-admin), on which model, with which form fields."""
        actor = self._roles.check_action(request)
        return actor, self._name(request), _form(request.body)

    def _done(self, message: str) -> Reply:
        return _html(self._render("_result.html", ok=True, message=message), page=False)

    @staticmethod
    def _name(request: Request) -> str:
        name = request.params["model"]
        check_model_name(name)
        return name

    async def stop(self) -> None:
        await self.sampler.stop()
        await asyncio.to_thread(self._audit.close)


def _form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what htmx sends); the last value of a repeated field."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"form body: {exc}") from None
    return {key: values[-1] for key, values in fields.items()}


def _html(text: str, page: bool = True) -> Reply:
    headers = [*HTML, (b"content-security-policy", _CSP)] if page else list(HTML)
    return 200, text.encode("utf-8"), headers


def _content_type(path: Path) -> str:
    return next((kind for suffix, kind in _TYPES.items() if path.name.endswith(suffix)), "application/octet-stream")
