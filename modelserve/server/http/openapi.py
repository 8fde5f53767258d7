"""``GET /v2/openapi.json``: the OpenAPI 3 document of the REST API, from ``openapi.yaml``.

The document is package data, read and converted to JSON once, on the first request (the server
starts no slower). Its ``x-operations`` section only holds the YAML anchors that routes with
optional segments share, so it is left out of the answer.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from modelserve.protocol.v2 import rest
from modelserve.server.http.app import JSON, Reply, Request, Route

PATH = "/v2/openapi.json"


@cache
def document() -> dict[str, Any]:
    """The parsed document, aliases expanded, without ``x-operations``."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    doc.pop("x-operations", None)
    return doc


class OpenApiEndpoints:
    def __init__(self) -> None:
        self._body: bytes | None = None

    def routes(self) -> list[Route]:
        return [Route(PATH, {"GET": self.openapi})]

    async def openapi(self, request: Request) -> Reply:
        if self._body is None:
            self._body = rest.dumps(document())
        return 200, self._body, JSON
