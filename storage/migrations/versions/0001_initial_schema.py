"""Our tables as the code before migrations created them (``Base.metadata.create_all``).

A database made by that code has these tables and the ``schema_version`` marker 1 but no
``hpo_alembic_version``; it is recognized and stamped 0001 without running this file.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The tables in creation order (parents first); dropped in reverse.
TABLES = (
    "datasets",
    "schema_version",
    "study_budget",
    "clusterings",
    "personas",
    "artifacts",
    "assignments",
    "cluster_stats",
    "evaluation_runs",
    "examples",
    "evaluation_results",
)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True)


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def _fk(column: str, target: str, ondelete: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(
        column, sa.Integer(), sa.ForeignKey(target, ondelete=ondelete), nullable=nullable
    )


def upgrade() -> None:
    op.create_table(
        "datasets",
        _id(),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(1000), nullable=False),
        sa.Column("n_personas", sa.Integer(), nullable=False),
        sa.Column("n_examples", sa.Integer(), nullable=False),
        _created_at(),
    )
    op.create_table("schema_version", sa.Column("version", sa.Integer(), nullable=False))
    op.bulk_insert(sa.table("schema_version", sa.column("version")), [{"version": 1}])
    op.create_table(
        "study_budget",
        sa.Column("study_name", sa.String(200), primary_key=True),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("claimed", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_table(
        "clusterings",
        _id(),
        _fk("dataset_id", "datasets.id", "CASCADE"),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("embedding_model", sa.String(200), nullable=False),
        sa.Column("silhouette", sa.Float(), nullable=False),
        _created_at(),
        sa.UniqueConstraint("dataset_id", "k", "seed", "embedding_model"),
    )
    op.create_table(
        "personas",
        _id(),
        _fk("dataset_id", "datasets.id", "CASCADE"),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.UniqueConstraint("dataset_id", "key"),
    )
    op.create_table(
        "artifacts",
        _id(),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("study_name", sa.String(200), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        _fk("persona_id", "personas.id", "SET NULL", nullable=True),
        _created_at(),
        sa.UniqueConstraint("kind", "study_name", "trial_number"),
    )
    op.create_table(
        "assignments",
        _id(),
        _fk("clustering_id", "clusterings.id", "CASCADE"),
        _fk("persona_id", "personas.id", "CASCADE"),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("silhouette", sa.Float(), nullable=False),
        sa.UniqueConstraint("clustering_id", "persona_id"),
    )
    op.create_table(
        "cluster_stats",
        _id(),
        _fk("clustering_id", "clusterings.id", "CASCADE"),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("n_personas", sa.Integer(), nullable=False),
        sa.Column("n_examples", sa.Integer(), nullable=False),
        sa.Column("silhouette", sa.Float(), nullable=False),
        sa.UniqueConstraint("clustering_id", "cluster_id"),
    )
    op.create_table(
        "evaluation_runs",
        _id(),
        sa.Column("study_name", sa.String(200), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(50), nullable=False),
        _fk("dataset_id", "datasets.id", "CASCADE"),
        _fk("clustering_id", "clusterings.id", "SET NULL", nullable=True),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("embedding_model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mean_similarity", sa.Float(), nullable=True),
        sa.Column("n_examples", sa.Integer(), nullable=True),
        _created_at(),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("study_name", "method", "trial_number", "cluster_id", "split"),
    )
    op.create_table(
        "examples",
        _id(),
        _fk("persona_id", "personas.id", "CASCADE"),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("split", sa.String(8), nullable=False),
        sa.UniqueConstraint("persona_id", "idx"),
    )
    op.create_table(
        "evaluation_results",
        _id(),
        _fk("run_id", "evaluation_runs.id", "CASCADE"),
        _fk("example_id", "examples.id", "CASCADE"),
        sa.Column("generated", sa.Text(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.UniqueConstraint("run_id", "example_id"),
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
