"""``GET /v1/precomputed/{model}/{key}``: one precomputed prediction by key, as JSON.

A thin front over the normal inference path: the key becomes a one-row v2 request (input ``key``,
INT64 or BYTES as the model's signature says) routed like any other, so versions, traffic
policies, metrics, the access log and the payload log apply unchanged. The answer::

    {"model": "churn", "version": "1", "key": "42", "model_version": 3,
     "computed_at": "2025-01-01T00:00:00.000+00:00", "outputs": {"probability": [0.1, 0.9]}}

``version`` is the served (precomputed) version; ``model_version`` the version of the live model
that computed the row. A key with no row is a 404 naming it; a model that is not precomputed
(no ``key`` input) is a 400.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import numpy as np

from modelserve.core.manager import Handle
from modelserve.errors import InvalidInput
from modelserve.protocol.v2 import rest
from modelserve.routing.router import Router
from modelserve.server.http.app import JSON, Reply, Request, Route, with_headers
from modelserve.server.observe import REQUEST_ID_HEADER, Observed, Observer, watched
from modelserve.types import InferInput, InferRequest

_ROUTE = r"/v1/precomputed/(?P<model>[^/]+)/(?P<key>[^/]+)"
_EXTRA = ("model_version", "computed_at")


class PrecomputedEndpoints:
    def __init__(self, observer: Observer, router: Router) -> None:
        self._observer = observer
        self._router = router

    def routes(self) -> list[Route]:
        return [Route(_ROUTE, {"GET": self.lookup})]

    async def lookup(self, request: Request) -> Reply:
        seen = self._observer.start(
            "rest",
            request.params["model"],
            request.header(REQUEST_ID_HEADER),
            request.scope["headers"],
            "GET /v1/precomputed/{model}/{key}",
        )
        reply = await watched(seen, self._lookup(request, seen))
        return with_headers(reply, seen.response_headers())

    async def _lookup(self, request: Request, seen: Observed) -> Reply:
        name, key = request.params["model"], unquote(request.params["key"])

        def decode(handle: Handle) -> InferRequest:
            spec = next(iter(handle.signatures.values())).input("key")
            if spec is None:
                raise InvalidInput(f"model {name!r} is not a precomputed model: it has no input 'key'")
            if spec.datatype == "BYTES":
                return InferRequest([InferInput("key", "BYTES", np.array([key.encode()], dtype=object))])
            try:
                number = int(key)
            except ValueError:
                raise InvalidInput(f"model {name!r} has INT64 keys; got key {key!r}") from None
            return InferRequest([InferInput("key", "INT64", np.array([number], dtype=np.int64))])

        answer = await self._router.infer(name, None, None, decode, request.header, seen)
        response = answer.response
        by_name = {o.name: o for o in response.outputs}
        doc: dict[str, Any] = {"model": response.model_name, "version": response.model_version, "key": key}
        if "model_version" in by_name:
            doc["model_version"] = int(by_name["model_version"].data.reshape(-1)[0])
        if "computed_at" in by_name:
            stamp = by_name["computed_at"].data.reshape(-1)[0]
            doc["computed_at"] = stamp.decode() if isinstance(stamp, bytes) else str(stamp)
        doc["outputs"] = {o.name: _row(o.data) for o in response.outputs if o.name not in _EXTRA}
        return 200, rest.dumps(doc), JSON


def _row(data: np.ndarray) -> Any:
    """The first row of an output as a JSON value (BYTES as text)."""
    row = data[0]
    if data.dtype.kind == "O":
        decode = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[object])
        return decode(row).tolist() if isinstance(row, np.ndarray) else decode(np.array([row], dtype=object))[0]
    return row.tolist()
