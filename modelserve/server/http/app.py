"""The REST front end as a plain ASGI application.

Why not Starlette or FastAPI: on this path the framework is most of the cost. Measured on one core
(``../shared/bench/NOTES.md``), a trivial Starlette endpoint serves ~12k req/s and a raw ASGI app
~20k; a small model's inference costs ~10 µs. So routing is a table of compiled regular
expressions, bodies are read with a size limit, and handlers return ``(status, body)``. Slow,
rich pages (the dashboard, later) can still be Starlette apps mounted under a prefix.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from modelserve.errors import ErrorCode, InvalidInput, ModelServeError, RequestTooLarge
from modelserve.protocol.status import http_status
from modelserve.protocol.v2.rest import encode_error

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, str], bytes], Awaitable[tuple[int, bytes]]]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


class Route:
    __slots__ = ("methods", "pattern")

    def __init__(self, pattern: str, methods: dict[str, Handler]) -> None:
        self.pattern = re.compile(pattern)
        self.methods = methods


class HttpApp:
    """Dispatches ``routes`` in order; the first whose pattern matches the path answers."""

    def __init__(self, routes: list[Route], max_body_bytes: int) -> None:
        self._routes = routes
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is handled by the server lifecycle, websockets are not offered
        try:
            status, body = await self._dispatch(scope, receive)
        except ModelServeError as exc:
            status, body = self._error(exc, scope)
        except Exception:
            request_id = uuid.uuid4().hex[:16]
            log.exception("internal error on %s %s (request id %s)", scope["method"], scope["path"], request_id)
            status, body = 500, encode_error(f"internal error (request id {request_id})")
        await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
        await send({"type": "http.response.body", "body": body})

    async def _dispatch(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        path: str = scope["path"]
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            handler = route.methods.get(scope["method"])
            if handler is None:
                allowed = ", ".join(sorted(route.methods))
                return 405, encode_error(f"method {scope['method']} is not allowed on {path}; use {allowed}")
            body = await self._body(receive) if scope["method"] == "POST" else b""
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            return await handler(params, body)
        return 404, encode_error(f"no endpoint at {path}")

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
    def _error(exc: ModelServeError, scope: Scope) -> tuple[int, bytes]:
        if exc.code is ErrorCode.INTERNAL:
            request_id = uuid.uuid4().hex[:16]
            log.error(
                "internal error on %s %s (request id %s): %s",
                scope["method"], scope["path"], request_id, exc.message, exc_info=exc,
            )  # fmt: skip
            return 500, encode_error(f"internal error (request id {request_id})")
        return http_status(exc.code), encode_error(exc.message)


def parse_version(params: dict[str, str]) -> int | None:
    """The ``version`` path segment as a positive int, None when absent. Raises InvalidInput."""
    raw = params.get("version")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput(f"model version must be a positive integer, got {raw!r}")
    return int(raw)
