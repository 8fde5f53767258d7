"""TensorFlow Serving REST endpoints: ``/v1/models/{m}[/versions/{v}|/labels/{l}][/metadata|:predict]``."""

from __future__ import annotations

from modelserve.core.manager import Handle, ModelManager
from modelserve.errors import ModelNotReady, Unsupported
from modelserve.protocol.names import parse_label
from modelserve.protocol.tfserving import rest as tf
from modelserve.routing.router import Router
from modelserve.server.http.app import JSON, Reply, Request, Route, parse_version, retirement_headers, with_headers
from modelserve.server.observe import REQUEST_ID_HEADER, VARIANT_HEADER, Observed, Observer, watched
from modelserve.types import InferRequest

_MODEL = r"/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"


class TfServingEndpoints:
    def __init__(self, manager: ModelManager, observer: Observer | None = None, router: Router | None = None) -> None:
        self._manager = manager
        self._observer = observer if observer is not None else Observer(manager, access_log=False)
        self._router = router if router is not None else Router(manager)

    def routes(self) -> list[Route]:
        return [
            Route(_MODEL + r":predict", {"POST": self.predict}),
            Route(_MODEL + r":(?P<verb>classify|regress)", {"POST": self.unsupported}),
            Route(_MODEL + r"/metadata", {"GET": self.metadata}),
            Route(_MODEL, {"GET": self.status}),
        ]

    async def status(self, request: Request) -> Reply:
        name, version = request.params["model"], parse_version(request.params)
        label = parse_label(request.params.get("label"))
        if label is not None:
            version = self._manager.model(name).labelled(label)
        statuses = self._manager.statuses(name)
        if version is not None:
            statuses = [s for s in statuses if s.version == version]
            if not statuses:
                self._manager.acquire(name, version)  # raises VersionNotFound with the versions known
        if not statuses:
            raise ModelNotReady(f"model {name!r} has no version to serve: {self._manager.model(name).error}")
        return 200, tf.encode_status(statuses), JSON

    async def metadata(self, request: Request) -> Reply:
        with await self._checkout(request) as handle:
            return 200, tf.encode_metadata(handle.metadata, handle.version, handle.signatures), JSON

    async def predict(self, request: Request) -> Reply:
        seen = self._observer.start(
            "tfserving",
            request.params["model"],
            request.header(REQUEST_ID_HEADER),
            request.scope["headers"],
            "POST /v1/models/{model}:predict",
        )
        reply = await watched(seen, self._predict(request, seen))
        return with_headers(reply, seen.response_headers())

    async def _predict(self, request: Request, seen: Observed) -> Reply:
        params = request.params
        rows = [False]  # whether the request used the "instances" (row) format: the answer follows it

        def decode(handle: Handle) -> InferRequest:
            with seen.span("decode"):
                infer_request, rows[0] = tf.decode_predict_request(request.body, handle.signatures)
            return infer_request

        version, label = parse_version(params), parse_label(params.get("label"))
        answer = await self._router.infer(params["model"], version, label, decode, request.header, seen)
        retiring = retirement_headers(answer.sunset)
        if answer.variant is not None:
            retiring.append((VARIANT_HEADER.encode(), answer.variant.encode()))
        with seen.span("encode"):
            body = tf.encode_predict_response(answer.response, rows[0])
        return 200, body, JSON + retiring

    async def _checkout(self, request: Request) -> Handle:
        params = request.params
        return await self._manager.checkout(params["model"], parse_version(params), parse_label(params.get("label")))

    async def unsupported(self, request: Request) -> Reply:
        raise Unsupported(f":{request.params['verb']} is not supported; use :predict")
