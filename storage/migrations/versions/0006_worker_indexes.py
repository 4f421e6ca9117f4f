"""Worker indexes: a counter per study, so that workers started without an index (by hand,
by ``docker compose --scale``, by a scheduler) never share a sampler seed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_indexes",
        sa.Column("study_name", sa.String(200), primary_key=True),
        sa.Column("next_index", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("worker_indexes")
