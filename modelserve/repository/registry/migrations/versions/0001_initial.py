"""Initial registry schema: models, versions, and the append-only audit log.

The audit log's append-only rule lives in the database as well as in the store: triggers abort
UPDATE and DELETE on ``audit`` (and TRUNCATE on PostgreSQL), whoever issues them. They stop
mistakes and bugs, not the database's owner, who can drop a trigger.

This file is history: it spells out every column instead of importing ``schema.py``, so that later
edits to the ORM classes cannot change what it creates.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = "audit log is append-only"

SQLITE_TRIGGERS = [
    f"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
    f"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
]
POSTGRES_TRIGGERS = [
    f"""CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{APPEND_ONLY}: % on audit refused', TG_OP;
END
$$""",
    "CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit"
    " FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
]


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("created_at", _time(), nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("model", sa.String(128), sa.ForeignKey("models.name"), primary_key=True),
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("checksums", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("libraries", sa.JSON(), nullable=False),
        sa.Column("config", sa.Text(), nullable=True),
        sa.Column("registered_by", sa.Text(), nullable=False),
        sa.Column("registered_at", _time(), nullable=False),
        sa.Column("stage_changed_at", _time(), nullable=False),
        sa.Column("replaced_by", sa.BigInteger(), nullable=True),
        sa.Column("sunset_at", _time(), nullable=True),
        sa.CheckConstraint("stage IN ('none', 'staging', 'production', 'archived')", name="ck_versions_stage"),
    )
    op.create_index(
        "ix_versions_one_production",
        "versions",
        ["model"],
        unique=True,
        sqlite_where=sa.text("stage = 'production'"),
        postgresql_where=sa.text("stage = 'production'"),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", _time(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=True),
        sa.Column("from_stage", sa.String(16), nullable=True),
        sa.Column("to_stage", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_model_id", "audit", ["model", "id"])
    for statement in SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER audit_no_update")
        op.execute("DROP TRIGGER audit_no_delete")
    else:
        op.execute("DROP TRIGGER audit_no_truncate ON audit")
        op.execute("DROP TRIGGER audit_no_update_delete ON audit")
        op.execute("DROP FUNCTION audit_append_only()")
    op.drop_table("audit")
    op.drop_table("versions")
    op.drop_table("models")
