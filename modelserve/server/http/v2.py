"""Open Inference Protocol v2 REST endpoints."""

from __future__ import annotations

from modelserve import __version__
from modelserve.core.manager import ModelManager
from modelserve.errors import ModelNotReady
from modelserve.protocol.v2 import rest
from modelserve.server.http.app import Route, parse_version

EXTENSIONS = ["parameters"]
_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"


class V2Endpoints:
    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager
        self._server_metadata = rest.dumps({"name": "modelserve", "version": __version__, "extensions": EXTENSIONS})

    def routes(self) -> list[Route]:
        return [
            Route(r"/v2/health/live", {"GET": self.live}),
            Route(r"/v2/health/ready", {"GET": self.ready}),
            Route(r"/v2/?", {"GET": self.server_metadata}),
            Route(_MODEL + r"/infer", {"POST": self.infer}),
            Route(_MODEL + r"/ready", {"GET": self.model_ready}),
            Route(_MODEL, {"GET": self.model_metadata}),
        ]

    async def live(self, params: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return 200, b'{"live":true}'

    async def ready(self, params: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return (200, b'{"ready":true}') if self._manager.ready else (503, b'{"ready":false}')

    async def server_metadata(self, params: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return 200, self._server_metadata

    async def model_metadata(self, params: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return 200, rest.encode_metadata(self._manager.metadata(params["model"], parse_version(params)))

    async def model_ready(self, params: dict[str, str], body: bytes) -> tuple[int, bytes]:
        name = params["model"]
        try:
            self._manager.acquire(name, parse_version(params)).release()
        except ModelNotReady as exc:
            return 503, rest.dumps({"name": name, "ready": False, "error": exc.message})
        return 200, rest.dumps({"name": name, "ready": True})

    async def infer(self, params: dict[str, str], body: bytes) -> tuple[int, bytes]:
        request = rest.decode_infer_request(body)
        with self._manager.acquire(params["model"], parse_version(params)) as handle:
            response = await handle.infer(request)
        return 200, rest.encode_infer_response(response)
