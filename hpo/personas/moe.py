"""``hpo moe``: the MoE sparse merge of a study's per-persona adapters, merged and evaluated.

The library work is :mod:`evaluators.moe.run`; this module finds the study's cluster and its
per-persona adapters (:mod:`hpo.personas.training`) and writes
``results/<study>/moe/moe_sparse_results.json``. MoE needs no trial, so it can run while the
study still runs.

Every step waits out a database outage of up to the grace period, as the workers do: loading,
the merge (adapters rewritten, files published again) and the evaluation (resumed from the
stored results) are safe to run again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storage
from evaluators.config import EvalConfig
from evaluators.moe import run as moe
from evaluators.moe.run import MoeScope, MoeSettings
from hpo.artifacts import output_layout, publish_file
from hpo.datasets import load_study_cluster
from hpo.personas.training import persona_adapters
from hpo.study.config import study_eval_config
from hpo.study.creation import GRACE_PERIOD, load_study


@dataclass
class MoeContext:
    """A study's MoE scope, its adapters and where its files go."""

    engine: Any
    layout: storage.OutputLayout
    scope: MoeScope
    adapters: dict[str, moe.PersonaAdapter]
    model_config: Any
    guard: storage.OutageGuard


def _guard(url: str) -> storage.OutageGuard:
    return storage.OutageGuard(url, patience=GRACE_PERIOD, waiter="hpo moe waits")


def open_moe(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    eval_config: EvalConfig | None = None,
    eval_overrides: Mapping[str, Any] | None = None,
) -> MoeContext:
    """Load the study's cluster and its per-persona adapters, waiting out an outage. The
    evaluation settings: the study's ``[evaluation]`` (or ``eval_config``, used whole) with
    ``eval_overrides`` replacing fields (:func:`hpo.study.config.study_eval_config`).

    Raises:
        storage.NotFoundError: No such study, or no per-persona adapters yet.
    """
    guard = _guard(url)
    return guard.call(
        _open_moe, url, study_name, output_root, eval_config, eval_overrides or {}, guard
    )


def _open_moe(
    url: str,
    study_name: str,
    output_root: Path,
    eval_config: EvalConfig | None,
    eval_overrides: Mapping[str, Any],
    guard: Any,
) -> MoeContext:
    _, config = load_study(url, study_name)
    settings = study_eval_config(
        config, eval_overrides, base=eval_config, where=f"study {study_name!r}"
    )
    engine = storage.open_storage(url)
    cluster = load_study_cluster(engine, config.study)
    scope = MoeScope(
        study_name=study_name,
        dataset_id=cluster.dataset_id,
        clustering_id=cluster.clustering_id,
        cluster_id=config.study.cluster_id,
        personas=cluster.personas,
        eval_config=settings.for_training(config.train.data.max_seq_length),
        embedding_model=config.study.embedding_model,
        model=config.model,
    )
    layout = output_layout(output_root, waiter="hpo moe waits")  # the store probed
    return MoeContext(
        engine=engine,
        layout=layout,
        scope=scope,
        adapters=persona_adapters(url, study_name, layout),
        model_config=config.model,
        guard=guard,
    )


def merge_moe(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    settings: MoeSettings = MoeSettings(),
) -> tuple[dict[str, Any], Path]:
    """Route and merge both MoE variants for every persona of the study (``hpo moe merge``).

    Returns:
        The results data and the path of ``moe_sparse_results.json``.
    """
    ctx = open_moe(url, study_name, output_root=output_root)
    data, _ = ctx.guard.call(
        moe.merge_all, ctx.engine, ctx.layout, ctx.scope, ctx.adapters, settings
    )
    path = moe.write_results(ctx.layout, study_name, data)
    ctx.guard.call(publish_file, ctx.engine, ctx.layout, "results_moe_sparse", study_name, path)
    return data, path


def evaluate_moe(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    eval_config: EvalConfig | None = None,
    eval_overrides: Mapping[str, Any] | None = None,
    per_persona: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Evaluate the merged variants (and the per-persona adapters) on the study's test
    examples and add the scores to ``moe_sparse_results.json`` (``hpo moe evaluate``).

    Raises:
        storage.NotFoundError: If nothing was merged yet.
    """
    from trainers.base_model import load_base_model

    ctx = open_moe(
        url,
        study_name,
        output_root=output_root,
        eval_config=eval_config,
        eval_overrides=eval_overrides,
    )
    data = moe.read_results(ctx.layout, study_name)
    if data is None:
        raise storage.NotFoundError(
            f"study {study_name!r} has no MoE merge yet: run `hpo moe merge --study {study_name}`"
        )
    base = load_base_model(ctx.model_config)
    data, _ = ctx.guard.call(
        moe.evaluate_all,
        ctx.engine,
        ctx.layout,
        ctx.scope,
        base,
        ctx.adapters,
        data,
        per_persona=per_persona,
    )
    path = moe.write_results(ctx.layout, study_name, data)
    ctx.guard.call(publish_file, ctx.engine, ctx.layout, "results_moe_sparse", study_name, path)
    return data, path


def run_moe(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    settings: MoeSettings = MoeSettings(),
    eval_config: EvalConfig | None = None,
    eval_overrides: Mapping[str, Any] | None = None,
    per_persona: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Merge, then evaluate: :func:`merge_moe` and :func:`evaluate_moe` in one call (the demo).

    Returns:
        The results data (routes, merged adapters, scores) and its path.
    """
    merge_moe(url, study_name, output_root=output_root, settings=settings)
    return evaluate_moe(
        url,
        study_name,
        output_root=output_root,
        eval_config=eval_config,
        eval_overrides=eval_overrides,
        per_persona=per_persona,
    )
