"""The data steps that every other step reads: import a dataset, cluster its personas,
and fetch one cluster's personas from storage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storage
from hpo.study.config import StudySection
from storage.datasets import DatasetExistsError
from trainers.clustering import Clustering, check_k, cluster_embeddings
from trainers.config import ModelConfig, TrainConfig
from trainers.data import DatasetError, LoadSummary, SplitConfig, load_dataset
from trainers.recipe import TrainResult


@dataclass(frozen=True)
class ImportSummary:
    """What ``hpo data import`` wrote."""

    dataset_id: int
    name: str
    n_personas: int
    n_examples: int
    sha256: str
    load: LoadSummary
    """Personas kept and dropped, examples per split, lines skipped; ``load.line()``."""


def import_dataset(
    engine: Any,
    path: str | Path,
    *,
    name: str | None = None,
    split: SplitConfig | None = None,
    format: str | None = None,
    min_examples: int | None = None,
) -> ImportSummary:
    """Validate a dataset file completely, then store it (nothing is written on bad input).

    Importing again under the same name is a no-op when it would store the same rows (the same
    file, split and personas kept), and refused otherwise.

    Args:
        engine: The storage engine.
        path: The dataset file, in any format of :mod:`trainers.formats`.
        name: The dataset's name; default the file stem.
        split: How examples without an explicit split are divided; default ``SplitConfig()``.
        format: A format name to force; default detect it from the file.
        min_examples: Drop personas with fewer examples; default keep all (a persona too
            small to split is then an error).

    Raises:
        storage.InvalidNameError: The name (given, or the file's stem) is not a valid name.
        trainers.data.DatasetError: The file cannot be used, or the name already holds another
            file or this file split otherwise (the message names the file); nothing is stored.
    """
    path = Path(path)
    what = "dataset name" if name is not None else "dataset name (the file's stem; give --name)"
    dataset_name = storage.validate_name(name if name is not None else path.stem, what=what)
    loaded = load_dataset(
        path,
        name=dataset_name,
        format=format,
        split=split or SplitConfig(),
        min_examples=min_examples,
    )
    dataset = loaded.dataset
    try:
        with storage.session_scope(engine) as session:
            dataset_id = storage.save_dataset(
                session,
                name=dataset.name,
                sha256=dataset.sha256,
                # the file's name and content, not where this machine keeps it
                source=f"{path.name} sha256:{dataset.sha256}",
                personas=dataset.personas,
            )
    except DatasetExistsError as exc:
        raise DatasetError(path, None, str(exc)) from exc
    return ImportSummary(
        dataset_id,
        dataset.name,
        len(dataset.personas),
        dataset.n_examples,
        dataset.sha256,
        loaded.summary,
    )


PROGRESS_MIN_PERSONAS = 200
"""From this many personas on, clustering shows progress bars by default (below, it takes
seconds and bars would be noise)."""


def embed_personas(
    engine: Any,
    dataset_id: int,
    personas: Sequence[storage.StoredPersona],
    model_name: str,
    *,
    progress: bool = False,
) -> Any:
    """The personas' embeddings, in order: stored ones read back, only the rest embedded.

    Embeddings are computed once per dataset and model and stored (``persona_embeddings``),
    so clustering again with another k or seed, or anything else that needs the vectors,
    does not embed again.

    Args:
        engine: The storage engine.
        dataset_id: The dataset the personas belong to.
        personas: Personas of that dataset, as stored.
        model_name: The embedding model (its name is the cache key).
        progress: Show a progress bar while embedding.

    Returns:
        A (len(personas), dim) float32 numpy array.
    """
    import numpy as np

    from trainers.embedding import embed

    with storage.session_scope(engine) as session:
        cached = storage.load_persona_embeddings(session, dataset_id, model_name)
    missing = [p for p in personas if p.key not in cached]
    if missing:
        fresh = embed([p.text for p in missing], model_name, progress=progress)
        computed = {p.key: vector for p, vector in zip(missing, fresh, strict=True)}
        with storage.session_scope(engine) as session:
            storage.save_persona_embeddings(session, dataset_id, model_name, computed)
        cached.update(computed)
    return np.stack([np.asarray(cached[p.key], dtype=np.float32) for p in personas])


def cluster_dataset(
    engine: Any,
    dataset: str,
    *,
    k: int = 5,
    seed: int = 0,
    embedding_model: str | None = None,
    progress: bool | None = None,
) -> tuple[int, Clustering]:
    """Embed the persona texts (once per model), run KMeans, and store the clustering.

    Args:
        engine: The storage engine.
        dataset: The dataset's name.
        k: Number of clusters.
        seed: KMeans random seed.
        embedding_model: Embedding model name or path; default the packaged all-MiniLM-L6-v2.
        progress: Show progress bars for embedding and KMeans (on stderr); default only from
            ``PROGRESS_MIN_PERSONAS`` personas on.

    Returns:
        The clustering id and the clustering.
    """
    from trainers.embedding import DEFAULT_EMBEDDING_MODEL

    model_name = embedding_model or DEFAULT_EMBEDDING_MODEL
    with storage.session_scope(engine) as session:
        dataset_id = storage.get_dataset_id(session, dataset)
        personas = storage.load_personas(session, dataset_id)
    check_k(k, len(personas))
    show = len(personas) >= PROGRESS_MIN_PERSONAS if progress is None else progress
    vectors = embed_personas(engine, dataset_id, personas, model_name, progress=show)
    result = cluster_embeddings(
        vectors,
        k,
        seed=seed,
        examples_per_item=[len(p.examples) for p in personas],
        progress=show,
    )
    stats = [
        storage.ClusterStatRow(c.cluster_id, c.n_personas, c.n_examples, c.silhouette)
        for c in result.clusters
    ]
    assignments = {
        p.id: (label, sil)
        for p, label, sil in zip(personas, result.labels, result.sample_silhouette, strict=True)
    }
    with storage.session_scope(engine) as session:
        clustering_id = storage.save_clustering(
            session,
            dataset_id=dataset_id,
            k=k,
            seed=seed,
            embedding_model=model_name,
            silhouette=result.silhouette,
            assignments=assignments,
            stats=stats,
        )
    return clustering_id, result


@dataclass(frozen=True)
class ClusterData:
    """One cluster's personas (with their examples), as stored."""

    dataset_id: int
    clustering_id: int
    cluster_id: int
    personas: list[Any]


def load_cluster(
    engine: Any,
    dataset: str,
    k: int,
    cluster_id: int,
    *,
    seed: int = 0,
    embedding_model: str | None = None,
) -> ClusterData:
    """Fetch the personas of one cluster of the stored clustering.

    Raises:
        storage.NotFoundError: No such dataset, no clustering with this k (the message says
            which command makes one), or no such cluster id.
    """
    from trainers.embedding import DEFAULT_EMBEDDING_MODEL

    model_name = embedding_model or DEFAULT_EMBEDDING_MODEL
    with storage.session_scope(engine) as session:
        dataset_id = storage.get_dataset_id(session, dataset)
        info = storage.find_clustering(
            session, dataset_id, k=k, seed=seed, embedding_model=model_name
        )
        if info is None:
            raise storage.NotFoundError(
                f"dataset {dataset!r} has no clustering with k={k}, seed={seed}; run "
                f"`hpo data cluster --dataset {dataset} --k {k} --seed {seed}`"
            )
        ids = set(storage.cluster_persona_ids(session, info.id, cluster_id))
        personas = [p for p in storage.load_personas(session, dataset_id) if p.id in ids]
    return ClusterData(dataset_id, info.id, cluster_id, personas)


def train_cluster_adapter(
    cluster: ClusterData,
    config: TrainConfig,
    model: ModelConfig,
    target: Path,
    *,
    log_path: Path | None = None,
) -> TrainResult:
    """One training run on a cluster (``hpo train``), saved atomically to ``target``."""
    from trainers.base_model import load_base_model
    from trainers.batching import prompt_pairs
    from trainers.recipe import train_lora

    data = config.data
    base = load_base_model(model)
    with storage.atomic_directory(Path(target)) as tmp:
        return train_lora(
            base,
            config,
            prompt_pairs(cluster.personas, "train", data.max_train_per_persona),
            prompt_pairs(cluster.personas, "val", data.max_val_per_persona),
            save_dir=tmp,
            log_path=log_path,
            progress=True,
        )


def load_study_cluster(engine: Any, section: StudySection) -> ClusterData:
    """The cluster a study tunes, as its config names it."""
    return load_cluster(
        engine,
        section.dataset,
        section.k,
        section.cluster_id,
        seed=section.clustering_seed,
        embedding_model=section.embedding_model,
    )
