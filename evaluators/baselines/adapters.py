"""The trained baselines (:mod:`evaluators.baselines.suite`): the unified and cluster-0 adapters,
trained once with the promoted trial's hyperparameters, recorded, reused while they match."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import storage
from evaluators.baselines.runs import BaselineSetup, evaluate_generated
from evaluators.scoring.method_run import MethodResult
from trainers.base_model import BaseModel
from trainers.batching import prompt_pairs
from trainers.config import TrainConfig
from trainers.input_file import RECORD_MAX_BYTES, InputFileError, read_json

ADAPTER_KIND_PREFIX = "baseline_"
"""Artifact kind of a baseline adapter: ``baseline_<name>``."""


SETUP_FILE = "baseline.json"
"""Written next to a baseline adapter: what it was trained on and its training config hash."""


def _training_hash(config: TrainConfig, base_name: str, pairs: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    head = {"train_config": config.to_dict(), "base_model": base_name}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for pair in pairs:
        digest.update(json.dumps([pair.prompt, pair.target]).encode() + b"\n")
    return digest.hexdigest()


def _reusable(
    layout: storage.OutputLayout, info: storage.ArtifactInfo | None, training_hash: str
) -> Path | None:
    """The recorded adapter on this machine (here, or fetched from the shared store), if it is
    intact and was trained with the same config and data; else None."""
    if info is None:
        return None
    try:
        path = storage.fetch_artifact(layout, info.path, info.sha256)
        setup = read_json(path / SETUP_FILE, limit=RECORD_MAX_BYTES, what="a setup record")
    except (storage.ArtifactUnavailable, OSError, InputFileError):
        return None
    if not isinstance(setup, dict):
        return None
    return path if setup.get("training_hash") == training_hash else None


def baseline_adapter(
    engine: Any,
    layout: storage.OutputLayout,
    setup: BaselineSetup,
    base: BaseModel,
    name: str,
    train_personas: Sequence[Any],
    train_config: TrainConfig,
    *,
    source_trial: int | None = None,
    progress: bool = True,
) -> tuple[Path, str]:
    """The baseline adapter ``name`` trained on ``train_personas``: reused when it exists.

    Trained with :func:`trainers.recipe.train_lora` on the resident base model (left unchanged),
    written atomically to ``models/<study>/baselines/<name>`` with :data:`SETUP_FILE`, and
    recorded as the artifact ``baseline_<name>`` of the study with its sha256.

    Args:
        engine: The storage engine.
        layout: Where outputs go.
        setup: The study the baseline belongs to.
        base: The loaded base model.
        name: The baseline (:data:`UNIFIED`, :data:`CLUSTER0`).
        train_personas: The personas whose train (and val) examples it learns.
        train_config: The promoted trial's config (the study's base config with its params).
        source_trial: The trial whose hyperparameters these are, for the record.
        progress: Show the training progress bar.

    Returns:
        The adapter directory and its sha256.

    Raises:
        ValueError: If the personas have no train or no val examples.
    """
    from trainers.recipe import train_lora

    data = train_config.data
    train = prompt_pairs(train_personas, "train", data.max_train_per_persona)
    val = prompt_pairs(train_personas, "val", data.max_val_per_persona)
    if not train or not val:
        raise ValueError(
            f"baseline {name!r} needs train and val examples: its {len(train_personas)} "
            f"personas have {len(train)} and {len(val)}"
        )
    training_hash = _training_hash(train_config, base.name, [*train, *val])
    kind = f"{ADAPTER_KIND_PREFIX}{name}"
    with storage.session_scope(engine) as session:
        info = storage.get_artifact(
            session, kind=kind, study_name=setup.study_name, trial_number=None
        )
    reused = _reusable(layout, info, training_hash)
    if info is not None and reused is not None:
        return reused, info.sha256

    target = layout.baseline_adapter_dir(setup.study_name, name)
    if progress:
        print(f"training baseline {name}: {len(train_personas)} personas, {len(train)} examples")
    with storage.atomic_directory(target) as tmp:
        result = train_lora(
            base,
            train_config,
            train,
            val,
            save_dir=tmp,
            log_path=layout.log_path(f"{setup.study_name}-baseline-{name}"),
            progress=progress,
            final_eval_only=True,  # nothing prunes a baseline
        )
        record = {
            "baseline": name,
            "study": setup.study_name,
            "source_trial": source_trial,
            "base_model": base.name,
            "n_personas": len(train_personas),
            "n_train_examples": len(train),
            "n_val_examples": len(val),
            "final_eval_loss": result.final_eval_loss,
            "training_hash": training_hash,
        }
        (tmp / SETUP_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
    adapter = storage.publish_and_record(  # to the shared store, if any
        engine,
        layout,
        target,
        kind=kind,
        study_name=setup.study_name,
        trial_number=None,  # one per study: a new promoted trial's params retrain it
    )
    return target, adapter.sha256


def evaluate_adapter_baseline(
    engine: Any,
    layout: storage.OutputLayout,
    setup: BaselineSetup,
    base: BaseModel,
    name: str,
    train_personas: Sequence[Any],
    train_config: TrainConfig,
    *,
    source_trial: int | None = None,
    progress: bool = True,
) -> MethodResult:
    """Train (or reuse) the baseline adapter ``name`` and evaluate it on the test examples."""
    adapter_dir, sha = baseline_adapter(
        engine,
        layout,
        setup,
        base,
        name,
        train_personas,
        train_config,
        source_trial=source_trial,
        progress=progress,
    )
    return evaluate_generated(
        engine, setup, base, name, setup.items, adapter_dir=adapter_dir, adapter_sha256=sha
    )
