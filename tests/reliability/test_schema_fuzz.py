"""Schema-based fuzzing of the REST API against the server's own OpenAPI document (issue 12).

A real server (control API on) serves ``/v2/openapi.json``; schemathesis generates requests for
every documented operation from it, and each response must be no 5xx and conform to the
document (status code, content type, body schema, headers). The one 5xx allowed is a 501 that
the operation documents: a feature the server does not offer on purpose (TF Serving :classify and
:regress, load/unload parameters, a non-UTF-8 BYTES output asked for as JSON). Path parameters are mostly random
names that answer 404, so each case is sent a second time aimed at a served model: ``iris`` for
reads, inference and traffic, ``adder`` for repository load/unload (which other cases do not use,
so unloading it breaks nothing that follows), version 1 and label ``stable``.

Budget, fixed for CI: ``max_examples`` per operation, derandomized, no deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from modelserve import testing

CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
THROWAWAY = "adder"  # loaded and unloaded by the repository operations
SERVED = {"model_name": "iris", "model_version": "1", "version_label": "stable", "key": "1"}

schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[testing.run]:
    with testing.run(repo, control_api=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(server: testing.run) -> Any:
    return schemathesis.openapi.from_url(server.http_url + "/v2/openapi.json")


def _aimed(case: Any) -> dict[str, Any]:
    served = {**SERVED, "model_name": THROWAWAY} if "/repository/models/" in case.path else SERVED
    return {k: served.get(k, v) for k, v in (case.path_parameters or {}).items()}


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any, server: testing.run) -> None:
    _check(case, server)
    if case.path_parameters:
        case.path_parameters = _aimed(case)
        _check(case, server)


def _check(case: Any, server: testing.run) -> None:
    response = case.call(base_url=server.http_url, timeout=30)
    documented = case.operation.definition.raw["responses"]
    status = response.status_code
    assert status < 500 or (status == 501 and "501" in documented), (
        f"{status} on {case.method} {case.formatted_path}: {response.text[:300]}\n"
        f"reproduce with: {case.as_curl_command()}"
    )
    case.validate_response(response, checks=CHECKS)
