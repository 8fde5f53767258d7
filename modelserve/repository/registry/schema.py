"""The registry's tables as typed SQLAlchemy 2 ORM classes.

The migrations in ``migrations/versions/`` create these tables; the ORM classes only read and write
them, and a test checks that the two agree. Change a table by adding a migration, then mirror it
here. The audit table is append-only: the migrations install triggers that abort any UPDATE or
DELETE on it (and TRUNCATE on PostgreSQL), and this package never issues either.

The ``action`` column of ``audit`` is a plain String(32) without a CHECK constraint: a new audit
action needs no migration, only a name of at most 32 characters.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

STAGES = ("none", "staging", "production", "archived")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite stores datetimes as text without an offset; this type converts to UTC on the way in
    and marks UTC on the way out, so callers always get aware datetimes. Naive input is refused:
    guessing its zone would silently shift the audit trail.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the registry stores timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        dict[str, str]: JSON(),
    }


class ModelRow(Base):
    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime]


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (
        CheckConstraint("stage IN ('none', 'staging', 'production', 'archived')", name="ck_versions_stage"),
        # the single-production rule, enforced by the database as well as by the store
        Index(
            "ix_versions_one_production",
            "model",
            unique=True,
            sqlite_where=text("stage = 'production'"),
            postgresql_where=text("stage = 'production'"),
        ),
    )

    model: Mapped[str] = mapped_column(String(128), ForeignKey("models.name"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    stage: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(Text)
    signature: Mapped[dict[str, Any]]
    checksums: Mapped[dict[str, str]]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")  # "metadata" is reserved on Base
    lineage: Mapped[dict[str, Any]]
    libraries: Mapped[dict[str, str]]
    config: Mapped[str | None] = mapped_column(Text)
    registered_by: Mapped[str] = mapped_column(Text)
    registered_at: Mapped[datetime]
    stage_changed_at: Mapped[datetime]
    replaced_by: Mapped[int | None] = mapped_column(BigInteger)
    sunset_at: Mapped[datetime | None]


class AuditRow(Base):
    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_model_id", "model", "id"),)

    # BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY (which is 64-bit there)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))  # no foreign key: the log outlives what it names
    version: Mapped[int | None] = mapped_column(BigInteger)
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]]


class RoutingRow(Base):
    """A served model's traffic policy override and router state (migration 0002)."""

    __tablename__ = "routing"

    # no foreign key: a served model need not be registered
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    # SQL NULL (not JSON null) when there is no override: config.yaml's traffic applies
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    state: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(Text)


class ProfileRow(Base):
    """A model version's reference profile for drift and outlier detection (migration 0004)."""

    __tablename__ = "profiles"

    # no foreign key: a served model need not be registered
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    profile: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(Text)


class PayloadRow(Base):
    """One payload log entry (migration 0003); ``payloads.py`` writes, prunes and reads them."""

    __tablename__ = "payloads"
    __table_args__ = (Index("ix_payloads_model_at", "model", "at"), Index("ix_payloads_at", "at"))

    # as in audit: BIGINT on PostgreSQL, SQLite's 64-bit INTEGER PRIMARY KEY
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    at: Mapped[datetime]
    request_id: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(128))  # no foreign key: a served model need not be registered
    version: Mapped[str] = mapped_column(Text)
    protocol: Mapped[str] = mapped_column(String(32))
    inputs: Mapped[dict[str, Any]]
    outputs: Mapped[dict[str, Any]]


class ApiKeyRow(Base):
    """An API key (migration 0005): the salted hash of its secret, never the token; its rate
    limit (migration 0006; null: none)."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('infer', 'admin')", name="ck_api_keys_role"),
        CheckConstraint("rate_limit IS NULL OR rate_limit > 0", name="ck_api_keys_rate_limit"),
        CheckConstraint("burst IS NULL OR (burst >= 1 AND rate_limit IS NOT NULL)", name="ck_api_keys_burst"),
    )

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    salt: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None]
    rate_limit: Mapped[float | None] = mapped_column(Float)
    burst: Mapped[int | None] = mapped_column(Integer)
