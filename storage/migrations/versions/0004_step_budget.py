"""A study budget in training steps beside the trial budget.

``study_budget`` gains ``max_steps`` (NULL: no step limit, which every existing study keeps),
``used_steps`` and ``steps_spent`` (see ``storage.budget``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study_budget") as batch:
        batch.add_column(sa.Column("max_steps", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("used_steps", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("steps_spent", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("study_budget") as batch:
        batch.drop_column("steps_spent")
        batch.drop_column("used_steps")
        batch.drop_column("max_steps")
