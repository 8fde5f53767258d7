"""``modelserve/server/http/openapi.yaml`` against the routes the server registers.

Every route (but the dashboard's /ui pages) and each of its methods is documented, in every form
of its optional segments (``/versions/{v}``, ``/labels/{l}``); every documented operation reaches
a route that has its method (no 404, no 405). Dispatch is checked as ``HttpApp`` does it: the
first route whose pattern matches the path answers.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson
import pytest
from openapi_spec_validator import validate

from modelserve.bootstrap import build_server
from modelserve.config.server import ServerConfig
from modelserve.server.http.app import Request, Route
from modelserve.server.http.openapi import PATH, OpenApiEndpoints, document

SAMPLES = {"model_name": "m", "model_version": "2", "version_label": "stable", "key": "k"}
# a model's optional segments: a path documented under one form must be documented under the others
FORMS = [
    ["/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"],
    [
        "/v1/models/{model_name}",
        "/v1/models/{model_name}/versions/{model_version}",
        "/v1/models/{model_name}/labels/{version_label}",
    ],
]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> list[Route]:
    server = build_server(ServerConfig(repository=tmp_path_factory.mktemp("empty"), http_port=0, grpc_port=0))
    return [r for r in server._app._routes if not r.pattern.pattern.startswith("/ui")]


def operations() -> list[tuple[str, str]]:
    return [
        (path, method.upper()) for path, item in document()["paths"].items() for method in item if method in METHODS
    ]


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], template)


def dispatch(routes: list[Route], path: str) -> Route | None:
    return next((r for r in routes if r.pattern.fullmatch(path)), None)


def test_the_document_is_valid_openapi() -> None:
    validate(document())


@pytest.mark.parametrize(("path", "method"), operations())
def test_every_documented_operation_reaches_a_route(routes: list[Route], path: str, method: str) -> None:
    route = dispatch(routes, concrete(path))
    assert route is not None, f"{method} {path} is documented, but {concrete(path)} would answer 404"
    assert method in route.methods, f"{method} {path} is documented, but {route.pattern.pattern} has {route.methods}"


def test_every_route_and_method_is_documented(routes: list[Route]) -> None:
    reached = {(id(dispatch(routes, concrete(path))), method) for path, method in operations()}
    missing = [(r.pattern.pattern, m) for r in routes for m in r.methods if (id(r), m) not in reached]
    assert not missing, f"routes without documentation in openapi.yaml: {missing}"


def test_every_form_of_an_optional_segment_is_documented(routes: list[Route]) -> None:
    documented = set(operations())
    missing = []
    for path, method in documented:
        for forms in FORMS:
            prefix = max((f for f in forms if path.startswith(f)), key=len, default=None)
            rest = path[len(prefix) :] if prefix is not None else ""
            if prefix is None or (rest and rest[0] not in "/:"):
                continue
            for other in forms:
                route = dispatch(routes, concrete(other + rest))
                if route is not None and method in route.methods and (other + rest, method) not in documented:
                    missing.append(f"{method} {other + rest}")
    assert not missing, f"served but undocumented forms: {sorted(set(missing))}"


def test_served_as_json_without_the_shared_operations() -> None:
    (route,) = OpenApiEndpoints().routes()
    assert route.pattern.pattern == PATH and route.role("GET") == "infer"
    status, body, headers = asyncio.run(route.methods["GET"](Request({"headers": []}, {}, b"")))
    doc = orjson.loads(body)
    assert status == 200 and (b"content-type", b"application/json") in headers
    assert (
        doc["openapi"].startswith("3.") and "x-operations" not in doc and doc == orjson.loads(orjson.dumps(document()))
    )


def test_the_yaml_ships_inside_the_package() -> None:
    import modelserve.server.http as package

    assert (Path(package.__file__).parent / "openapi.yaml").is_file()
