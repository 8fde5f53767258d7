"""The model repository extension over REST: index, load and unload.

Load and unload are admin operations, refused with 403 unless the server runs with
``--control-api on``; the index is read-only and always served.
"""

from __future__ import annotations

from modelserve.core.manager import ModelManager
from modelserve.protocol.v2 import rest
from modelserve.server.control import checked_target
from modelserve.server.http.app import JSON, Reply, Request, Route

# ".+", not "[^/]+": a name with "/" (sent as %2F) must reach the name check and get a 400
_MODEL = r"/v2/repository/models/(?P<model>.+)"


class RepositoryEndpoints:
    def __init__(self, manager: ModelManager, control_api: bool) -> None:
        self._manager = manager
        self._control_api = control_api

    def routes(self) -> list[Route]:
        return [
            Route(r"/v2/repository/index", {"POST": self.index}),
            Route(_MODEL + r"/load", {"POST": self.load}, role="admin"),
            Route(_MODEL + r"/unload", {"POST": self.unload}, role="admin"),
        ]

    async def index(self, request: Request) -> Reply:
        ready_only = rest.decode_index_request(request.body)
        return 200, rest.encode_index(self._manager.index(ready_only)), JSON

    async def load(self, request: Request) -> Reply:
        await self._manager.load_model(self._checked(request))
        return 200, b"", JSON

    async def unload(self, request: Request) -> Reply:
        await self._manager.unload_model(self._checked(request))
        return 200, b"", JSON

    def _checked(self, request: Request) -> str:
        parameters = rest.decode_control_parameters(request.body) if self._control_api else {}
        return checked_target(self._control_api, request.params["model"], parameters)
