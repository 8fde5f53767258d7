"""Payloads: the payload log as a table, for servers started with ``--payload-log-sink registry``.

One row per logged request: when (``at``, indexed alone and with the model), the request id, the
model, its version and protocol, and the ``inputs`` and ``outputs`` tensors as JSON (the same
``{name: {datatype, shape, data}}`` objects the JSON Lines files hold). No foreign key to
``models``: a served model need not be registered, and the log outlives what it names. Unlike
the audit log, this table is pruned: the writer deletes its oldest rows beyond a row limit.

Like 0001, this file spells out its columns instead of importing ``schema.py``.

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payloads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
    )
    op.create_index("ix_payloads_model_at", "payloads", ["model", "at"])
    op.create_index("ix_payloads_at", "payloads", ["at"])


def downgrade() -> None:
    op.drop_index("ix_payloads_at", "payloads")
    op.drop_index("ix_payloads_model_at", "payloads")
    op.drop_table("payloads")
