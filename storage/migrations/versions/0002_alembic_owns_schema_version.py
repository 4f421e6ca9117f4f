"""Alembic's ``hpo_alembic_version`` is the schema's version; the old marker locks out old code.

The code before migrations refuses a database whose ``schema_version`` marker is above its 1
("newer than this code"), so setting the marker to 2 stops that code from writing into a
schema it does not know. The marker is never changed again: later revisions change only
``hpo_alembic_version``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_marker = sa.table("schema_version", sa.column("version", sa.Integer()))


def _set_marker(version: int) -> None:
    op.execute(_marker.delete())
    op.bulk_insert(_marker, [{"version": version}])


def upgrade() -> None:
    _set_marker(2)


def downgrade() -> None:
    _set_marker(1)
