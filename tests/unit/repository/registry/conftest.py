"""Every registry test runs on SQLite and on a real PostgreSQL (see tests/fixtures/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.repository.registry import RegistryStore
from tests.fixtures.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures, used by name)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty registry database; the SQLite file's directory does not exist yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry' / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(registry_url: str) -> Iterator[RegistryStore]:
    with RegistryStore(registry_url) as opened:
        yield opened
