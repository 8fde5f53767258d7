"""Per-key rate limits (issue #12): ``rate_limit`` (requests per second) and ``burst`` (requests
at once; when null, twice the rate) on ``api_keys``. Both null: the key is not limited, as every
key created before this migration.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:  # SQLite needs batch mode for constraints
        batch.add_column(sa.Column("rate_limit", sa.Float(), nullable=True))
        batch.add_column(sa.Column("burst", sa.Integer(), nullable=True))
        batch.create_check_constraint("ck_api_keys_rate_limit", "rate_limit IS NULL OR rate_limit > 0")
        batch.create_check_constraint("ck_api_keys_burst", "burst IS NULL OR (burst >= 1 AND rate_limit IS NOT NULL)")


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("ck_api_keys_burst", type_="check")
        batch.drop_constraint("ck_api_keys_rate_limit", type_="check")
        batch.drop_column("burst")
        batch.drop_column("rate_limit")
