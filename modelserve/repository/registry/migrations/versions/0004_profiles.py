"""Profiles: the reference statistics of a model version, for drift and outlier detection.

One row per (model, version): ``profile`` is the JSON document modelserve/monitoring/profile.py
builds from training data (per-feature samples, bins and frequencies, the numeric features' mean
and inverse covariance, a reference sample of rows); ``source`` says what it was built from. No
foreign key to ``versions``: a server may serve models from a directory only. Writing one is
audited (action ``profile``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("profiles")
