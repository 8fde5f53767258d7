"""The REST front end as a plain ASGI application.

Why not Starlette or FastAPI: on this path the framework is most of the cost. Measured on one core
(``../shared/bench/NOTES.md``), a trivial Starlette endpoint serves ~12k req/s and a raw ASGI app
~20k; a small model's inference costs ~10 µs. So routing is a table of compiled regular
expressions, bodies are read with a size limit, and handlers return ``(status, body)``. Slow,
rich pages (the dashboard, later) can still be Starlette apps mounted under a prefix.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from modelserve.errors import ErrorCode, InvalidInput, ModelServeError, RequestTooLarge
from modelserve.protocol import names
from modelserve.protocol.status import http_status
from modelserve.protocol.v2.rest import encode_error
from modelserve.server import limits as limits_module
from modelserve.server.auth import Authenticator
from modelserve.server.gate import Gate

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, bytes, Headers]

JSON = [(b"content-type", b"application/json")]
_WITH_BODY = frozenset({"POST", "PUT", "DELETE"})


class Request:
    """What a handler sees: path parameters, the whole body, and header lookup."""

    __slots__ = ("body", "params", "scope")

    def __init__(self, scope: Scope, params: dict[str, str], body: bytes) -> None:
        self.scope = scope
        self.params = params
        self.body = body

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (lower case), or None.

        A header sent twice with different values is ambiguous (which did the client mean?), so
        it is a 400 rather than first-one-wins."""
        key = name.encode("latin-1")
        values = {v for k, v in self.scope["headers"] if k == key}
        if len(values) > 1:
            shown = ", ".join(sorted(repr(v.decode("latin-1")) for v in values))
            title = "-".join(part.capitalize() for part in name.split("-"))
            raise InvalidInput(f"header {title} is sent {len(values)} times with different values: {shown}")
        return values.pop().decode("latin-1") if values else None


Handler = Callable[[Request], Awaitable[Reply]]


class Route:
    """``methods`` under ``pattern``; ``role`` is what a caller needs when auth is on (server/auth.py):
    one role for every method, or one per method ("infer" for those not named). ``gated``: refused
    with 503 once shutdown begins (server/gate.py); health probes and metrics are not."""

    __slots__ = ("gated", "methods", "pattern", "roles")

    def __init__(
        self, pattern: str, methods: dict[str, Handler], role: str | dict[str, str] = "infer", gated: bool = True
    ) -> None:
        self.pattern = re.compile(pattern)
        self.methods = methods
        self.roles = role if isinstance(role, dict) else dict.fromkeys(methods, role)
        self.gated = gated

    def role(self, method: str) -> str:
        return self.roles.get(method, "infer")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one request may hold (server/limits.py); ServerConfig gives the values."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_json_depth: int = 32
    max_headers: int = 100
    max_header_bytes: int = 16 * 1024


class HttpApp:
    """Dispatches ``routes`` in order; the first whose pattern matches the path answers."""

    def __init__(
        self,
        routes: list[Route],
        limits: HttpLimits | None = None,
        auth: Authenticator | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._routes = routes
        self._limits = limits or HttpLimits()
        self._max_body = self._limits.max_body_bytes
        self._auth = auth  # None: auth off, every route open
        self._gate = gate  # None: no graceful shutdown (tests of one endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is handled by the server lifecycle, websockets are not offered
        try:
            status, body, headers = await self._dispatch(scope, receive)
        except asyncio.CancelledError:
            if self._gate is None or not self._gate.aborting:
                raise  # the client went away: nobody to answer
            aborted = self._gate.aborted()
            status, body, headers = with_headers(self._error(aborted, scope), aborted.response_headers)
        except ModelServeError as exc:
            status, body, headers = with_headers(self._error(exc, scope), getattr(exc, "response_headers", []))
        except Exception as exc:
            request_id = uuid.uuid4().hex[:16]
            log.exception("internal error on %s %s (request id %s)", scope["method"], scope["path"], request_id)
            reply = 500, encode_error(f"internal error (request id {request_id})"), JSON
            status, body, headers = with_headers(reply, getattr(exc, "response_headers", []))
        # an explicit length avoids chunked transfer encoding
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        if self._gate is not None and self._gate.closed and (b"connection", b"close") not in headers:
            headers.append((b"connection", b"close"))  # shutting down: no request after this one here
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _dispatch(self, scope: Scope, receive: Receive) -> Reply:
        path: str = scope["path"]
        limits = self._limits
        problem = limits_module.headers_problem(scope["headers"], limits.max_headers, limits.max_header_bytes)
        if problem is not None:
            return 431, encode_error(problem), JSON
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            handler = route.methods.get(scope["method"])
            if handler is None:
                allowed = ", ".join(sorted(route.methods))
                return 405, encode_error(f"method {scope['method']} is not allowed on {path}; use {allowed}"), JSON
            if self._auth is not None:  # before the body is read: an unauthenticated client uploads nothing
                self._auth.check_http(scope, route.role(scope["method"]))
            gate = self._gate if route.gated else None
            if gate is not None:
                gate.enter()  # ShuttingDown (503) once shutdown began
            try:
                body = await self._body(receive) if scope["method"] in _WITH_BODY else b""
                if body:
                    limits_module.check_json_depth(_json_part(scope, body), limits.max_json_depth)
                params = {k: v for k, v in match.groupdict().items() if v is not None}
                return await handler(Request(scope, params, body))
            finally:
                if gate is not None:
                    gate.leave()
        return 404, encode_error(f"no endpoint at {path}"), JSON

    async def _body(self, receive: Receive) -> bytes:
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            if len(body) > self._max_body:
                raise self._too_large()
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> RequestTooLarge:
        return RequestTooLarge(f"request body is larger than the limit of {self._max_body} bytes")

    @staticmethod
    def _error(exc: ModelServeError, scope: Scope) -> Reply:
        if exc.code is ErrorCode.INTERNAL:
            request_id = uuid.uuid4().hex[:16]
            log.error(
                "internal error on %s %s (request id %s): %s",
                scope["method"], scope["path"], request_id, exc.message, exc_info=exc,
            )  # fmt: skip
            return 500, encode_error(f"internal error (request id {request_id})"), JSON
        return http_status(exc.code), encode_error(exc.message), JSON


def _json_part(scope: Scope, body: bytes) -> bytes | memoryview:
    """The JSON text of a body: all of it, or the part before the binary tensors (the binary
    extension's Inference-Header-Content-Length); a malformed length is left to the endpoint."""
    for key, value in scope["headers"]:
        if key == b"inference-header-content-length":
            try:
                return memoryview(body)[: max(0, int(value))]
            except ValueError:
                return b""
    return body


def with_headers(reply: Reply, extra: list[tuple[str, str]]) -> Reply:
    """``reply`` with ``extra`` response headers added (names lower case, latin-1)."""
    if not extra:
        return reply
    status, body, headers = reply
    return status, body, [*headers, *((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra)]


def retirement_headers(sunset: tuple[datetime, datetime] | None) -> Headers:
    """``Deprecation`` (RFC 9745: ``@`` epoch seconds) and ``Sunset`` (RFC 8594: an HTTP date) for a
    version scheduled for retirement; none otherwise."""
    if sunset is None:
        return []
    deprecated, retires = sunset
    return [
        (b"deprecation", f"@{int(deprecated.timestamp())}".encode()),
        (b"sunset", format_datetime(retires.astimezone(UTC), usegmt=True).encode()),
    ]


def parse_version(params: dict[str, str]) -> int | None:
    """The ``version`` path segment as a positive int, None when absent. Raises InvalidInput."""
    return names.parse_version(params.get("version"))
