"""The model registry: which versions exist, their stage, where they came from, an audit log, and
each served model's traffic policy override and router state.

Persistence only (SQLite or PostgreSQL through SQLAlchemy, schema by Alembic migrations shipped in
``migrations/``); it decides nothing about serving. See ``store.py`` for the contract.
"""

from pathlib import Path

from modelserve.repository.registry.errors import RegistryConflict, RegistryError
from modelserve.repository.registry.records import (
    AuditAction,
    AuditEntry,
    KeyRecord,
    ModelSummary,
    ProfileRecord,
    RegisteredVersion,
    RoutingRecord,
    Stage,
)
from modelserve.repository.registry.store import RegistryStore

REGISTRY_DIR = ".modelserve"  # hidden: the repository scan and the hot-reload fingerprint skip it


def default_url(repository: Path) -> str:
    """The registry that belongs to a repository directory: ``REPOSITORY/.modelserve/registry.db``."""
    return f"sqlite:///{(repository / REGISTRY_DIR / 'registry.db').absolute()}"


__all__ = [
    "REGISTRY_DIR",
    "AuditAction",
    "AuditEntry",
    "KeyRecord",
    "ModelSummary",
    "ProfileRecord",
    "RegisteredVersion",
    "RegistryConflict",
    "RegistryError",
    "RegistryStore",
    "RoutingRecord",
    "Stage",
    "default_url",
]
