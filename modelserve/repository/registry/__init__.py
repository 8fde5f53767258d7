"""The model registry: which versions exist, their stage, where they came from, and an audit log.

Persistence only (SQLite or PostgreSQL through SQLAlchemy, schema by Alembic migrations shipped in
``migrations/``); it decides nothing about serving. See ``store.py`` for the contract.
"""

from modelserve.repository.registry.errors import RegistryConflict, RegistryError
from modelserve.repository.registry.records import AuditAction, AuditEntry, ModelSummary, RegisteredVersion, Stage
from modelserve.repository.registry.store import RegistryStore

__all__ = [
    "AuditAction",
    "AuditEntry",
    "ModelSummary",
    "RegisteredVersion",
    "RegistryConflict",
    "RegistryError",
    "RegistryStore",
    "Stage",
]
