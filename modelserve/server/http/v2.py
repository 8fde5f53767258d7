"""Open Inference Protocol v2 REST endpoints, with the binary tensor extension."""

from __future__ import annotations

from modelserve import __version__
from modelserve.core.manager import ModelManager
from modelserve.errors import ModelNotReady
from modelserve.protocol import names
from modelserve.protocol.v2 import binary, rest
from modelserve.routing.router import Router
from modelserve.server.http.app import JSON, Reply, Request, Route, parse_version, retirement_headers, with_headers
from modelserve.server.info import EXTENSIONS, SERVER_NAME
from modelserve.server.observe import REQUEST_ID_HEADER, VARIANT_HEADER, Observed, Observer, watched

_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
_OCTETS = b"application/octet-stream"


class V2Endpoints:
    def __init__(self, manager: ModelManager, observer: Observer | None = None, router: Router | None = None) -> None:
        self._manager = manager
        self._observer = observer if observer is not None else Observer(manager, access_log=False)
        self._router = router if router is not None else Router(manager)
        self._server_metadata = rest.dumps({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})

    def routes(self) -> list[Route]:
        return [
            Route(r"/v2/health/live", {"GET": self.live}, role="public", gated=False),
            Route(r"/v2/health/ready", {"GET": self.ready}, role="public", gated=False),
            Route(r"/v2/?", {"GET": self.server_metadata}),
            Route(_MODEL + r"/infer", {"POST": self.infer}),
            Route(_MODEL + r"/ready", {"GET": self.model_ready}),
            Route(_MODEL, {"GET": self.model_metadata}),
        ]

    @staticmethod
    def _label(request: Request, version: int | None, parameter: object = None) -> str | None:
        """The version label from the Model-Version-Label header or the request parameter."""
        return names.pick_label(
            version,
            ("header Model-Version-Label", request.header(names.LABEL_HEADER)),
            (f"parameter {names.LABEL_PARAMETER}", parameter),
        )

    async def live(self, request: Request) -> Reply:
        return 200, b'{"live":true}', JSON

    async def ready(self, request: Request) -> Reply:
        return (200, b'{"ready":true}', JSON) if self._manager.ready else (503, b'{"ready":false}', JSON)

    async def server_metadata(self, request: Request) -> Reply:
        return 200, self._server_metadata, JSON

    async def model_metadata(self, request: Request) -> Reply:
        version = parse_version(request.params)
        meta = await self._manager.metadata(request.params["model"], version, self._label(request, version))
        return 200, rest.encode_metadata(meta), JSON

    async def model_ready(self, request: Request) -> Reply:
        name = request.params["model"]
        try:
            version = parse_version(request.params)
            self._manager.acquire(name, version, self._label(request, version)).release()
        except ModelNotReady as exc:
            return 503, rest.dumps({"name": name, "ready": False, "error": exc.message}), JSON
        return 200, rest.dumps({"name": name, "ready": True}), JSON

    async def infer(self, request: Request) -> Reply:
        seen = self._observer.start(
            "rest",
            request.params["model"],
            request.header(REQUEST_ID_HEADER),
            request.scope["headers"],
            "POST /v2/models/{model}/infer",
        )
        reply = await watched(seen, self._infer(request, seen))
        return with_headers(reply, seen.response_headers())

    async def _infer(self, request: Request, seen: Observed) -> Reply:
        version = parse_version(request.params)
        json_length = binary.header_length(request.header(binary.HEADER), len(request.body))
        with seen.span("decode"):
            infer_request = rest.decode_infer_request(request.body, json_length, self._manager.max_request_elements)
        label = self._label(request, version, infer_request.parameters.get(names.LABEL_PARAMETER))
        answer = await self._router.infer(request.params["model"], version, label, infer_request, request.header, seen)
        response = answer.response
        retiring = retirement_headers(answer.sunset)
        if answer.variant is not None:
            retiring.append((VARIANT_HEADER.encode(), answer.variant.encode()))
        with seen.span("encode"):
            body, header_length = rest.encode_infer_response(response, infer_request)
        if header_length is None:
            return 200, body, JSON + retiring
        return 200, body, [(b"content-type", _OCTETS), (binary.HEADER.encode(), str(header_length).encode()), *retiring]
