"""Routing: a served model's traffic policy override and its router state.

One row per model that has either: ``policy`` overrides the ``traffic:`` section of the model's
config.yaml (NULL: no override), ``state`` is what its router has learnt (bandit counts, canary
step). No foreign key to ``models``: a server may serve models from a directory only.

The new audit actions (traffic, canary_step, canary_rollback) need no change here: ``audit.action``
is a String(32) without a CHECK constraint.

Like 0001, this file spells out its columns instead of importing ``schema.py``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("policy", sa.JSON(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("routing")
