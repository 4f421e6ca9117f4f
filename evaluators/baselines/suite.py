"""Baselines on the identical test examples, each evaluated once and cached.

Every baseline is scored on the test examples of the evaluated personas (the promoted trial's
cluster), so it pairs example by example with the promoted adapter and with each other:

- ``base_model``: the base model with no adapter;
- ``unified_adapter``: an adapter trained on every persona's train split, with the promoted
  trial's hyperparameters;
- ``cluster0_adapter``: the same, trained on cluster 0's personas (the original plan's 72.65%);
- ``copy_persona``: the persona text itself as the reply (no generation);
- ``reference_ceiling``: another reference reply of the same persona as the reply: the next
  test example's, in example order, wrapping around (no generation);
- ``persona_swapped``: the base model with another persona's text in the prompt: the persona
  farthest from the own one in embedding space (lowest cosine similarity of the persona
  texts; ties go to the first key in sorted order). ``base_model - persona_swapped`` is the
  persona effect: if it is not above zero, the model does not read the persona.

The floor of every method, and the floor-normalized score beside the raw one, come with each
:class:`~evaluators.scoring.method_run.MethodResult` (:func:`baseline_report` adds the normalized
interval). :func:`baseline_report` tests only the decision rule's comparisons (Holm over those,
named) and describes the yardsticks against the base model, as the report and the promotion do.

Cache: a method's run in storage is named ``<method>.<digest>`` where the digest covers the
base model, the adapter's sha256, the test set's hash (example ids, prompts and references)
and the embedding model; the run key adds the :class:`~evaluators.config.EvalConfig` key. A
finished run is read back without generating; a changed adapter, test set or config gets a
new run. A baseline adapter is trained once into ``models/<study>/baselines/<name>`` (atomic),
recorded as an artifact with its sha256, and reused while its files still match that sha256
and its :data:`SETUP_FILE` names the same training config hash (config, base model and
training pairs). A killed training starts that adapter again; finished adapters and every
evaluated batch are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import storage
from evaluators.baselines.adapters import (
    ADAPTER_KIND_PREFIX,
    SETUP_FILE,
    baseline_adapter,
    evaluate_adapter_baseline,
)
from evaluators.baselines.runs import (
    BASE_MODEL,
    BASELINES,
    CEILING,
    CLUSTER0,
    COPY_PERSONA,
    DIGEST_LENGTH,
    METHOD_COLUMN,
    SWAPPED,
    UNIFIED,
    BaselineSetup,
    evaluate_base_model,
    evaluate_generated,
    items_hash,
    method_digest,
    run_key,
)
from evaluators.baselines.texts import (
    ceiling_replies,
    evaluate_copy_persona,
    evaluate_persona_swapped,
    evaluate_reference_ceiling,
    swapped_items,
    swapped_partners,
)
from evaluators.config import DEFAULT_MIN_EFFECT
from evaluators.report.decision import rule_comparisons
from evaluators.scoring.method_run import EvalItem, MethodResult
from evaluators.scoring.similarity import normalized, reference_ceiling
from evaluators.stats.comparison import compare, compare_methods
from evaluators.stats.families import PROMOTION_FAMILY, PROMOTION_NOTE, family_fields
from trainers.base_model import BaseModel
from trainers.config import TrainConfig

__all__ = [
    "ADAPTER_KIND_PREFIX",
    "BASELINES",
    "BASE_MODEL",
    "CEILING",
    "CLUSTER0",
    "COPY_PERSONA",
    "DIGEST_LENGTH",
    "METHOD_COLUMN",
    "SETUP_FILE",
    "SWAPPED",
    "UNIFIED",
    "BaselineSetup",
    "baseline_adapter",
    "baseline_report",
    "ceiling_replies",
    "evaluate_adapter_baseline",
    "evaluate_base_model",
    "evaluate_baselines",
    "evaluate_copy_persona",
    "evaluate_generated",
    "evaluate_persona_swapped",
    "evaluate_reference_ceiling",
    "items_hash",
    "method_digest",
    "run_key",
    "swapped_items",
    "swapped_partners",
]


def evaluate_baselines(
    engine: Any,
    layout: storage.OutputLayout,
    setup: BaselineSetup,
    base: BaseModel,
    *,
    all_personas: Sequence[Any],
    cluster0_personas: Sequence[Any] | None,
    train_config: TrainConfig,
    source_trial: int | None = None,
    progress: bool = True,
    include_base: bool = True,
) -> dict[str, MethodResult]:
    """Every baseline on the identical test examples, each from cache when already evaluated.

    Args:
        engine: The storage engine.
        layout: Where the baseline adapters go.
        setup: The study, the evaluated personas and the EvalConfig.
        base: The resident base model (left unchanged).
        all_personas: Every persona of the dataset: the unified adapter's training data and
            the candidates of the persona swap.
        cluster0_personas: Cluster 0's personas, or None to skip that baseline (no
            clustering).
        train_config: The promoted trial's training config.
        source_trial: The promoted trial's number, recorded with the adapters.
        progress: Show progress bars.
        include_base: Also evaluate the bare base model (a caller that evaluates it under its
            own run already passes False, so that it is not generated twice).

    Returns:
        Method name -> result, in :data:`BASELINES` order.
    """
    results = {
        COPY_PERSONA: evaluate_copy_persona(engine, setup),
        CEILING: evaluate_reference_ceiling(engine, setup),
        SWAPPED: evaluate_persona_swapped(engine, setup, base, all_personas),
    }
    if include_base:
        results[BASE_MODEL] = evaluate_base_model(engine, setup, base)
    trained = [(UNIFIED, all_personas), (CLUSTER0, cluster0_personas)]
    for name, personas in trained:
        if personas is not None:
            results[name] = evaluate_adapter_baseline(
                engine,
                layout,
                setup,
                base,
                name,
                personas,
                train_config,
                source_trial=source_trial,
                progress=progress,
            )
    return {name: results[name] for name in BASELINES if name in results}


def _normalized_ci(result: MethodResult) -> list[float] | None:
    ci = result.similarity_ci
    if ci is None:
        return None
    return [normalized(ci.low, result.floor), normalized(ci.high, result.floor)]


def baseline_report(
    results: Mapping[str, MethodResult],
    *,
    evaluated: str | None = None,
    reference: str = BASE_MODEL,
    tuned_cluster: int | None = None,
    embedding_model: str | None = None,
    items: Sequence[EvalItem] | None = None,
    min_effect: float = DEFAULT_MIN_EFFECT,
    seed: int = 0,
) -> dict[str, Any]:
    """JSON-ready summary: each method with its interval, floor and normalized score (and its
    interval); the decision rule's own comparisons of ``evaluated``, Holm-corrected among
    themselves only (the family ``promotion_comparisons``, named in ``tested_family``, as in
    the promotion's results file); every other method described against
    ``reference`` with its unadjusted interval and no verdict; and the persona effect
    ``base_model - persona_swapped``, described.

    Consistent with the rule (:func:`evaluators.report.decision.rule_comparisons`) and with
    :func:`evaluators.trials.promotion.rule_family`: the yardsticks (copy the persona, the
    reference agreement, the swapped persona) describe the scale and are not hypotheses, so
    adding one never changes a tested comparison. Without ``evaluated`` the rule tests
    nothing (the baselines alone are no hypotheses of it): the family is empty.

    Args:
        results: Methods by name, all on the same examples (baselines, plus any other method
            such as the promoted adapter).
        evaluated: The method the rule tests (the promoted adapter), if any.
        reference: The method every other is described against (the rule's base model).
        tuned_cluster: The study's cluster; for cluster 0 the cluster-0 adapter is not tested
            (it is cluster 0 itself).
        embedding_model: The scorer, for the all-pairs reference ceiling (with ``items``).
        items: The test examples; when given, the all-pairs reference ceiling is added.
        min_effect: The minimum effect a tested comparison must beat, in percentage points.
        seed: Seed of the resampling.

    Raises:
        ValueError: If ``reference`` or ``evaluated`` is not among ``results``.
    """
    for name in (reference, evaluated):
        if name is not None and name not in results:
            raise ValueError(f"no method {name!r} in the results; have {sorted(results)}")
    family = (
        []
        if evaluated is None
        else rule_comparisons(
            results, cluster=evaluated, base=reference, tuned_cluster=tuned_cluster
        )
    )
    pairs = [
        (reference, name) if name == SWAPPED else (name, reference)
        for name in results
        if name != reference
    ]
    described = {
        f"{a} - {b}": {**compare(results[a], results[b], seed=seed).to_dict(), "tested": False}
        for a, b in pairs
        if (a, b) not in family
    }
    methods = {
        name: {**result.to_dict(), "normalized_ci": _normalized_ci(result)}
        for name, result in results.items()
    }
    report: dict[str, Any] = {
        "methods": methods,
        **family_fields(
            PROMOTION_FAMILY,
            compare_methods(results, family, min_effect=min_effect, seed=seed) if family else {},
            PROMOTION_NOTE,
        ),
        "described": described,
    }
    effect = f"{reference} - {SWAPPED}"
    if effect in described:
        report["persona_effect"] = described[effect]
    if items:
        report["reference_ceiling_all_pairs"] = reference_ceiling(
            [it.reference for it in items], [it.persona_key for it in items], embedding_model
        )
    return report
