"""The objective of a per-persona study (:mod:`hpo.personas.training`): what a persona trial shares
with the others, and the trial itself, which trains the persona it names with the fixed
hyperparameters or reuses its adapter when the config hash matches."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

import storage
from evaluators.moe.run import PERSONAS_GROUP, adapter_name
from hpo.personas.card import persona_card
from hpo.study.config import StudyConfig
from hpo.study.trial_records import (
    FAIL_REASON,
    FAIL_REASON_LENGTH,
    MEMORY_FIELDS,
    error_type,
    save_trial_fields,
)
from hpo.workers.trial_card import Trained
from trainers.config import TrainConfig
from trainers.input_file import RECORD_MAX_BYTES, InputFileError, read_json

PERSONA_ATTR = "persona"
"""Trial user attribute: the persona key the trial trains."""


HASH_ATTR = "config_hash"
"""Trial user attribute: the training config hash of the persona's adapter, its first
:data:`HASH_PREFIX` hex digits (``optuna trials`` prints attributes whole; ``persona.json``
keeps the whole hash)."""
HASH_PREFIX = 16


def short_hash(config_hash: str) -> str:
    """What :data:`HASH_ATTR` holds of a config hash (a whole hash of an older trial too)."""
    return config_hash[:HASH_PREFIX]


ADAPTER_KIND = "persona_adapter"


SETUP_FILE = "persona.json"


def training_hash(config: TrainConfig, base_model: str, pairs: Sequence[Any]) -> str:
    """sha256 of what an adapter depends on: hyperparameters, base model, training pairs."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"train": config.to_dict(), "base": base_model}, sort_keys=True).encode()
    )
    for pair in pairs:
        digest.update(json.dumps([pair.prompt, pair.target]).encode() + b"\n")
    return digest.hexdigest()


@dataclass
class PersonaJob:
    """What every persona trial of one process shares."""

    study_name: str
    """The tuned study (adapters go under its folder)."""
    config: StudyConfig
    train_config: TrainConfig
    personas: dict[str, Any]
    """Persona key -> persona with examples."""
    layout: storage.OutputLayout
    engine: Any
    base_model: str

    def pairs(self, key: str) -> tuple[list[Any], list[Any]]:
        """A persona's train and val pairs, capped as the train config says."""
        from trainers.batching import prompt_pairs

        data = self.train_config.data
        persona = [self.personas[key]]
        return (
            prompt_pairs(persona, "train", data.max_train_per_persona),
            prompt_pairs(persona, "val", data.max_val_per_persona),
        )

    def config_hash(self, key: str) -> str:
        train, val = self.pairs(key)
        return training_hash(self.train_config, self.base_model, [*train, *val])

    def adapter_dir(self, key: str) -> Path:
        return self.layout.study_adapter_dir(self.study_name, PERSONAS_GROUP, adapter_name(key))

    def reusable(self, key: str, config_hash: str) -> float | None:
        """The eval_loss of an existing adapter trained with this hash, or None."""
        try:
            setup = read_json(
                self.adapter_dir(key) / SETUP_FILE, limit=RECORD_MAX_BYTES, what="a setup record"
            )
        except InputFileError:  # none yet, or unreadable: trained again
            return None
        if not isinstance(setup, dict) or setup.get(HASH_ATTR) != config_hash:
            return None
        return float(setup["final_eval_loss"])


class PersonaObjective:
    """Trains the persona a trial names, or reuses its adapter when the hash matches."""

    def __init__(self, job: PersonaJob, base: Any) -> None:
        self.job = job
        self.base = base

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except Exception as exc:
            # The reason shows in the dashboard and in the summary, not only in a log.
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(FAIL_REASON, error_type(exc))
            with contextlib.suppress(storage.StorageError):
                name, number = trial.study.study_name, trial.number
                fields = {FAIL_REASON: reason[:FAIL_REASON_LENGTH]}
                save_trial_fields(self.job.engine, name, number, **fields)
            raise

    def _run(self, trial: optuna.Trial) -> float:
        from trainers.recipe import train_lora

        job = self.job
        key = trial.user_attrs.get(PERSONA_ATTR)
        if key not in job.personas:
            raise ValueError(f"trial {trial.number} names persona {key!r}, not one of the study's")
        config_hash = job.config_hash(key)
        target = job.adapter_dir(key)
        reused = job.reusable(key, config_hash)
        if reused is None:
            train, val = job.pairs(key)

            def report(step: int, eval_loss: float) -> bool:
                trial.report(eval_loss, step)
                return False  # no pruning: every persona needs its adapter

            with storage.atomic_directory(target) as tmp:
                result = train_lora(
                    self.base,
                    job.train_config,
                    train,
                    val,
                    report=report,
                    save_dir=tmp,
                    log_path=job.layout.log_path(f"{trial.study.study_name}-{adapter_name(key)}"),
                    final_eval_only=True,  # nothing prunes a persona's adapter
                )
                setup = {
                    PERSONA_ATTR: key,
                    HASH_ATTR: config_hash,
                    "final_eval_loss": result.final_eval_loss,
                    "n_train": len(train),
                    "n_val": len(val),
                    "train_config": job.train_config.to_dict(),
                    "base_model": job.base_model,
                }
                (tmp / SETUP_FILE).write_text(json.dumps(setup, indent=2, sort_keys=True))
                trained = Trained(job.train_config, result.final_eval_loss, len(train), len(val))
                folder = target.relative_to(job.layout.root).as_posix()
                persona_card(job.config, key, trained, folder).write(tmp)
            loss = result.final_eval_loss
            trial.set_user_attr("train_seconds", round(result.seconds, 2))
            # a smaller micro-batch after running out of memory: the trial's record
            memory = {name: getattr(result, name) for name in MEMORY_FIELDS}
            save_trial_fields(job.engine, trial.study.study_name, trial.number, **memory)
        else:
            loss = reused
        trial.set_user_attr("reused", reused is not None)
        adapter = storage.publish_and_record(  # to the shared store, if any
            job.engine,
            job.layout,
            target,
            kind=ADAPTER_KIND,
            study_name=trial.study.study_name,
            trial_number=trial.number,
            persona_id=getattr(job.personas[key], "id", None),
        )
        trial.set_user_attr(HASH_ATTR, short_hash(config_hash))
        save_trial_fields(  # the trial's record: its adapter (hpo.study.trial_records)
            job.engine,
            trial.study.study_name,
            trial.number,
            adapter_path=adapter.relpath,
            adapter_sha256=adapter.sha256,
        )
        return loss
