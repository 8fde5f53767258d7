"""API keys: bearer tokens with a role, ``infer`` or ``admin`` (issue #12).

One row per key: ``key_id`` is the token's public part; ``salt`` and ``hash`` are the
HMAC-SHA256 of its secret (``modelserve/config/apikeys.py``); the token itself is never stored.
A revoked key keeps its row (``revoked_at`` set) so the list shows who had access. Creating and
revoking are audited (actions ``key_created``, ``key_revoked``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('infer', 'admin')", name="ck_api_keys_role"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
