"""SQLAlchemy models of our tables (they live next to Optuna's in the same database).

Sentinels instead of NULL in unique keys: SQL treats NULLs as distinct, so a key with a
NULL column is never enforced. ``EvaluationRun.trial_number`` is ``-1`` for "no trial" and
``cluster_id`` ``-1`` for "all personas"; ``Artifact.study_name`` is ``''`` for "no study" and
``trial_number`` ``-1`` for "no trial" (the artifact functions translate these to ``None``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2
"""The ``schema_version`` marker since migrations (revision 0002); never bump it again.

Code from before migrations refuses a marker above its 1, so it cannot write into a migrated
schema. The schema's version is the Alembic revision in ``hpo_alembic_version``: a table
change needs a new revision in ``storage/migrations/versions`` (see ``storage.migrations``).
"""

NO_TRIAL = -1
"""Stored ``trial_number`` meaning "not tied to a trial"."""
ALL_CLUSTERS = -1
"""Stored ``cluster_id`` of an evaluation over all personas."""
NO_STUDY = ""
"""Stored ``Artifact.study_name`` meaning "not tied to a study"."""

SPLITS = ("train", "val", "test")

DATASET_NAME_LENGTH = 100
"""Longest dataset name (``datasets.name``); ``storage.validate_name`` allows as many."""
DATASET_SOURCE_LENGTH = 1000
"""Longest stored source (``datasets.source``: the file's name and sha256; a path in rows
of older versions); a longer one is stored shortened."""
PERSONA_KEY_LENGTH = 200
"""Longest persona id from a dataset file (``personas.key``); PostgreSQL refuses longer,
SQLite would not, so :func:`storage.save_dataset` checks it on both."""


class Base(DeclarativeBase):
    """Declarative base of every table of the storage package."""


schema_version = Table("schema_version", Base.metadata, Column("version", Integer, nullable=False))


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class Dataset(Base):
    """An imported persona dataset."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(DATASET_NAME_LENGTH), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(DATASET_SOURCE_LENGTH))
    n_personas: Mapped[int]
    n_examples: Mapped[int]
    created_at: Mapped[datetime] = _created_at()


class Persona(Base):
    """One persona of a dataset; ``key`` is the persona id from the file."""

    __tablename__ = "personas"
    __table_args__ = (UniqueConstraint("dataset_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(PERSONA_KEY_LENGTH))
    text: Mapped[str] = mapped_column(Text)


class Example(Base):
    """One (context, reply) pair of a persona; ``idx`` is its order within the persona."""

    __tablename__ = "examples"
    __table_args__ = (UniqueConstraint("persona_id", "idx"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    idx: Mapped[int]
    context: Mapped[str] = mapped_column(Text)
    reply: Mapped[str] = mapped_column(Text)
    split: Mapped[str] = mapped_column(String(8))


class Clustering(Base):
    """A k-means clustering of a dataset's personas."""

    __tablename__ = "clusterings"
    __table_args__ = (UniqueConstraint("dataset_id", "k", "seed", "embedding_model"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    k: Mapped[int]
    seed: Mapped[int]
    embedding_model: Mapped[str] = mapped_column(String(200))
    silhouette: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = _created_at()


class ClusterStat(Base):
    """Size and silhouette of one cluster of a clustering."""

    __tablename__ = "cluster_stats"
    __table_args__ = (UniqueConstraint("clustering_id", "cluster_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    clustering_id: Mapped[int] = mapped_column(ForeignKey("clusterings.id", ondelete="CASCADE"))
    cluster_id: Mapped[int]
    n_personas: Mapped[int]
    n_examples: Mapped[int]
    silhouette: Mapped[float] = mapped_column(Float)


class Assignment(Base):
    """The cluster of one persona in a clustering, with the persona's silhouette."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("clustering_id", "persona_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    clustering_id: Mapped[int] = mapped_column(ForeignKey("clusterings.id", ondelete="CASCADE"))
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    cluster_id: Mapped[int]
    silhouette: Mapped[float] = mapped_column(Float)


class Artifact(Base):
    """A file or directory on disk (adapter, base model) with its hash."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("kind", "study_name", "trial_number"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(50))
    path: Mapped[str] = mapped_column(String(4096))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    study_name: Mapped[str] = mapped_column(String(200), default=NO_STUDY)
    trial_number: Mapped[int] = mapped_column(default=NO_TRIAL)
    persona_id: Mapped[int | None] = mapped_column(
        ForeignKey("personas.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = _created_at()


class EvaluationRun(Base):
    """One evaluation of one method (trial adapter, cluster adapter, base model) on a split."""

    __tablename__ = "evaluation_runs"
    __table_args__ = (
        UniqueConstraint("study_name", "method", "trial_number", "cluster_id", "split"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    study_name: Mapped[str] = mapped_column(String(200))
    trial_number: Mapped[int] = mapped_column(default=NO_TRIAL)
    method: Mapped[str] = mapped_column(String(50))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    clustering_id: Mapped[int | None] = mapped_column(
        ForeignKey("clusterings.id", ondelete="SET NULL"), nullable=True
    )
    cluster_id: Mapped[int] = mapped_column(default=ALL_CLUSTERS)
    split: Mapped[str] = mapped_column(String(8))
    embedding_model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="running")
    """``running`` (or being resumed), ``complete`` or ``failed``."""
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the run failed (one line), while its status is ``failed``."""
    mean_similarity: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_examples: Mapped[int | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = _created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EvaluationResult(Base):
    """The generated reply for one example in one evaluation run, and its similarity."""

    __tablename__ = "evaluation_results"
    __table_args__ = (UniqueConstraint("run_id", "example_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("evaluation_runs.id", ondelete="CASCADE"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    generated: Mapped[str] = mapped_column(Text)
    similarity: Mapped[float] = mapped_column(Float)


class StudyBudget(Base):
    """The exact number of trials and training steps a study may use, shared by all its
    workers (``storage.budget``)."""

    __tablename__ = "study_budget"

    study_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    n_trials: Mapped[int]
    claimed: Mapped[int] = mapped_column(default=0, server_default="0")
    max_steps: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """Optimizer steps all trials together may train; NULL: no step limit."""
    used_steps: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Optimizer steps charged so far (charged before they are trained)."""
    steps_spent: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Set by the first charge that did not fit: no trial starts or goes on after it."""


class StudyRecord(Base):
    """A JSON document a study keeps under a key (``storage.study_records``): its whole
    config, each evaluated trial's figures, the promoted trial. Optuna's study user
    attributes keep only short pointers, since ``optuna studies`` prints them whole."""

    __tablename__ = "study_records"

    study_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    """The document as canonical JSON (sorted keys, no spaces)."""
    sha256: Mapped[str] = mapped_column(String(64))
    """sha256 of ``value``: the pointer a study attribute holds a prefix of."""
    updated_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class PersonaEmbedding(Base):
    """A persona text's sentence embedding under one model, computed once and reused.

    Clustering with another k or seed, the MoE router and the persona-effect baseline read
    these rows instead of embedding again. ``vector`` holds ``dim`` little-endian float32s.
    """

    __tablename__ = "persona_embeddings"
    __table_args__ = (
        UniqueConstraint("persona_id", "embedding_model", name="uq_persona_embeddings_model"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    embedding_model: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int]
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class EvaluationLease(Base):
    """Who evaluates what, until when: two evaluators never evaluate one target at once.

    ``target`` names the work (for example ``trial:12`` or ``baseline:unified``). A lease is
    taken with one conditional write and renewed while the work runs; an expired lease (its
    evaluator died) may be taken over by another.
    """

    __tablename__ = "evaluation_leases"

    study_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorkerIndex(Base):
    """A study's counter of worker indexes (``storage.worker_indexes``): every worker started
    without an index takes the next one, so no two samplers share a seed."""

    __tablename__ = "worker_indexes"

    study_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    next_index: Mapped[int] = mapped_column(BigInteger)
    """The index the next worker of the study gets (0 for the first)."""
