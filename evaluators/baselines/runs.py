"""What the baselines (:mod:`evaluators.baselines.suite`) are evaluated on, how their runs are
named (the cache key), and the generated baselines' common step: generate and score once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluators.config import EvalConfig
from evaluators.scoring.method_run import (
    EvalItem,
    MethodResult,
    RunKey,
    eval_items,
    evaluate_method,
)
from trainers.base_model import BaseModel
from trainers.embedding import DEFAULT_EMBEDDING_MODEL

BASE_MODEL = "base_model"


UNIFIED = "unified_adapter"


CLUSTER0 = "cluster0_adapter"


COPY_PERSONA = "copy_persona"


CEILING = "reference_ceiling"


SWAPPED = "persona_swapped"


BASELINES = (BASE_MODEL, UNIFIED, CLUSTER0, COPY_PERSONA, CEILING, SWAPPED)
"""Every baseline, in report order."""


DIGEST_LENGTH = 12
"""Hex digits of the run-name digest (48 bits)."""


METHOD_COLUMN = 50
"""Length of ``evaluation_runs.method``: a stored method name must fit."""


@dataclass(frozen=True)
class BaselineSetup:
    """What the baselines of one study are evaluated on, and how."""

    study_name: str
    dataset_id: int
    clustering_id: int | None
    cluster_id: int
    """The evaluated cluster (-1: all personas)."""
    personas: Sequence[Any]
    """The evaluated personas (``key``, ``text``, ``examples``): their test examples are the
    identical examples of every baseline."""
    eval_config: EvalConfig = EvalConfig()
    embedding_model: str | None = None
    """The model that scores similarity (default: the packaged one)."""

    @property
    def items(self) -> list[EvalItem]:
        """The test examples, with each persona's own prompt."""
        return eval_items(self.personas, "test")


def items_hash(items: Sequence[EvalItem]) -> str:
    """sha256 of the examples a method is scored on: ids, personas, prompts and references."""
    digest = hashlib.sha256()
    for it in sorted(items, key=lambda it: it.example_id):
        line = json.dumps([it.example_id, it.persona_key, it.prompt, it.reference])
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def method_digest(
    base_name: str, adapter_sha256: str | None, items: Sequence[EvalItem], embedding_model: str
) -> str:
    """The short digest that names a baseline's run: base model, adapter, test set, scorer."""
    parts = [base_name, adapter_sha256 or "no-adapter", items_hash(items), embedding_model]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:DIGEST_LENGTH]


def run_key(setup: BaselineSetup, name: str, digest: str) -> RunKey:
    """The storage key of a baseline's run: ``<name>.<digest>@<EvalConfig key>``.

    Raises:
        ValueError: If the stored name would not fit the method column.
    """
    key = RunKey(
        study_name=setup.study_name,
        method=f"{name}.{digest}",
        dataset_id=setup.dataset_id,
        clustering_id=setup.clustering_id,
        cluster_id=setup.cluster_id,
        eval_config=setup.eval_config,
    )
    if len(key.stored_method) > METHOD_COLUMN:
        raise ValueError(
            f"baseline name {name!r} is too long: {key.stored_method!r} exceeds "
            f"{METHOD_COLUMN} characters"
        )
    return key


def named(result: MethodResult, name: str) -> MethodResult:
    """The result under the baseline's name (its run is stored as ``<name>.<digest>``)."""
    return dataclasses.replace(result, method=name)


def embedding_model_of(setup: BaselineSetup) -> str:
    """The model that scores the setup's similarity (the packaged one by default)."""
    return setup.embedding_model or DEFAULT_EMBEDDING_MODEL


def evaluate_generated(
    engine: Any,
    setup: BaselineSetup,
    base: BaseModel,
    name: str,
    items: Sequence[EvalItem],
    *,
    adapter_dir: Path | None = None,
    adapter_sha256: str | None = None,
) -> MethodResult:
    """Generate and score one baseline, or read it back when its run is already complete."""
    digest = method_digest(base.name, adapter_sha256, items, embedding_model_of(setup))
    result = evaluate_method(
        engine,
        run_key(setup, name, digest),
        base,
        items,
        adapter_dir=adapter_dir,
        embedding_model=setup.embedding_model,
    )
    return named(result, name)


def evaluate_base_model(engine: Any, setup: BaselineSetup, base: BaseModel) -> MethodResult:
    """The base model with no adapter, on the test examples."""
    return evaluate_generated(engine, setup, base, BASE_MODEL, setup.items)
