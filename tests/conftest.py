from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelserve import testing
from tests.fixtures.models import build_fixtures

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]  # a setosa: class 0
IRIS_REQUEST = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW}]}


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture model repository (examples plus feature models), built once per session."""
    return build_fixtures(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def server(repo: Path) -> Iterator[testing.run]:
    """One real server on an ephemeral port, shared by the integration tests that only read."""
    with testing.run(repo) as srv:
        yield srv


@pytest.fixture
def client(server: testing.run) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as c:
        yield c
