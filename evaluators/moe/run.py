"""The MoE sparse merge end to end: route, merge and evaluate every target persona.

For each target persona the router (:mod:`evaluators.moe.router`) picks the k personas whose texts
are most similar and weights them; their per-persona adapters are merged into one adapter for
the target (:mod:`evaluators.moe.merge`, the exact ``cat`` merge by default), and the target's test
examples are answered with it. Two variants are evaluated and reported:

- :data:`MOE_SELF`: the persona's own adapter is among the candidates;
- :data:`MOE_COLD`: it is not (a new persona, "cold start").

The per-persona adapters themselves, each persona answered by its own adapter, are a third
method, :data:`PERSONA_ADAPTERS`.

Merged adapters go to ``models/<study>/<variant>/<persona>/`` (peft format, with
``merge.json``); ``results/<study>/moe/moe_sparse_results.json`` records the routes, weights,
merged adapters and, after evaluation, each variant's scores. Each variant is one evaluation
run named ``<variant>.<digest>`` (the digest covers the routing settings, every source
adapter's sha256 and the test examples), evaluated persona by persona with that persona's
adapter, stored as it goes and resumable. MoE needs no trial: only the per-persona adapters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storage
from evaluators.baselines.runs import items_hash
from evaluators.config import EvalConfig
from evaluators.moe.plan import (
    PERSONAS_GROUP,
    MoeSettings,
    PersonaAdapter,
    adapter_name,
    merge_variant,
    persona_vectors,
    plan_routes,
)
from evaluators.report.decision import MOE_COLD, MOE_SELF
from evaluators.scoring.adapters import adapter_batches_for
from evaluators.scoring.method_run import (
    EvalItem,
    MethodResult,
    RunKey,
    eval_items,
    evaluate_method,
    generate_and_store,
)
from trainers.base_model import BaseModel
from trainers.config import ModelConfig
from trainers.embedding import DEFAULT_EMBEDDING_MODEL
from trainers.input_file import RECORD_MAX_BYTES, InputFileError, read_json

__all__ = [
    "DIGEST_LENGTH",
    "MOE_COLD",
    "MOE_SELF",
    "PERSONAS_GROUP",
    "PERSONA_ADAPTERS",
    "RESULTS_FILE",
    "RESULTS_KIND",
    "VARIANTS",
    "MoeScope",
    "MoeSettings",
    "PersonaAdapter",
    "adapter_name",
    "evaluate_all",
    "evaluate_by_persona",
    "merge_all",
    "merge_variant",
    "merged_from_results",
    "method_name",
    "persona_vectors",
    "plan_routes",
    "read_results",
    "results_path",
    "write_results",
]

PERSONA_ADAPTERS = "persona_adapters"
"""Method name: each persona answered by its own adapter."""
VARIANTS = {MOE_SELF: True, MOE_COLD: False}
"""MoE variant -> whether the target's own adapter is a candidate."""
RESULTS_KIND = "moe"
RESULTS_FILE = "moe_sparse_results.json"
DIGEST_LENGTH = 12
MIXED_PERSONAS = 64
"""With mixed adapter batches, the personas whose adapters are loaded at once (a bound on the
memory they take: about 13 MB each for a rank-8 attention LoRA of an 8B model in bf16)."""


def method_name(
    name: str,
    adapters: Mapping[str, PersonaAdapter],
    items: Sequence[EvalItem],
    settings: MoeSettings | None,
) -> str:
    """``<name>.<digest>``: the digest covers the settings, every adapter used and the
    examples, so another merge or another test set gets another run."""
    digest = hashlib.sha256()
    digest.update(json.dumps(None if settings is None else settings.to_dict()).encode())
    for key in sorted(adapters):
        digest.update(f"{key}\t{adapters[key].sha256}\n".encode())
    digest.update(items_hash(items).encode())
    return f"{name}.{digest.hexdigest()[:DIGEST_LENGTH]}"


@dataclass(frozen=True)
class MoeScope:
    """The study, its evaluated personas and how replies are generated."""

    study_name: str
    dataset_id: int
    clustering_id: int | None
    cluster_id: int
    personas: Sequence[Any]
    """The target personas with their examples (the study's cluster)."""
    eval_config: EvalConfig = EvalConfig()
    embedding_model: str | None = None
    model: ModelConfig | None = None
    """The study's base model (named in the merged adapters' cards); None: no cards."""

    def items(self) -> list[EvalItem]:
        """The targets' test examples."""
        items = eval_items(self.personas, "test")
        if not items:
            raise ValueError(f"study {self.study_name!r}: its personas have no test examples")
        return items


def evaluate_by_persona(
    engine: Any,
    scope: MoeScope,
    base: BaseModel,
    name: str,
    adapters: Mapping[str, PersonaAdapter],
    settings: MoeSettings | None = None,
) -> MethodResult:
    """Answer each persona's test examples with that persona's adapter, as one method.

    One evaluation run for all personas, filled persona by persona (each batch stored at once,
    so a restart resumes); the result covers every test example and pairs with the other
    methods on the example ids. With mixed adapter batches
    (:func:`evaluators.scoring.adapters.adapter_batches_for`), up to :data:`MIXED_PERSONAS`
    personas' adapters are loaded at once and their examples share batches; the replies are
    those of persona by persona.

    Raises:
        ValueError: If a target persona has no adapter.
    """
    items = scope.items()
    lacking = sorted({it.persona_key for it in items} - set(adapters))
    if lacking:
        raise ValueError(
            f"{name}: {len(lacking)} persona(s) have no adapter (e.g. {lacking[0]!r}); "
            "train them first (hpo personas train)"
        )
    key = RunKey(
        study_name=scope.study_name,
        method=method_name(name, adapters, items, settings),
        dataset_id=scope.dataset_id,
        clustering_id=scope.clustering_id,
        cluster_id=scope.cluster_id,
        eval_config=scope.eval_config,
    )
    by_persona: dict[str, list[EvalItem]] = {}
    for it in items:
        by_persona.setdefault(it.persona_key, []).append(it)
    with storage.session_scope(engine) as session:
        run_id = storage.start_evaluation_run(
            session,
            study_name=key.study_name,
            method=key.stored_method,
            dataset_id=key.dataset_id,
            clustering_id=key.clustering_id,
            cluster_id=key.cluster_id,
            embedding_model=scope.embedding_model or DEFAULT_EMBEDDING_MODEL,
        )
        done = storage.done_example_ids(session, run_id)
    from tqdm.auto import tqdm

    todo = [p for p, group in by_persona.items() if any(it.example_id not in done for it in group)]
    # mixed: up to MIXED_PERSONAS adapters loaded at once, their rows batched together
    step = MIXED_PERSONAS if adapter_batches_for(scope.eval_config, base.device) == "mixed" else 1
    groups = [todo[i : i + step] for i in range(0, len(todo), step)]
    for group in tqdm(groups, desc=f"evaluating {name}", leave=False):
        generate_and_store(
            engine,
            key,
            base,
            [it for persona in group for it in by_persona[persona]],
            adapter_dir=adapters[group[0]].path if step == 1 else None,
            persona_adapters=None if step == 1 else {p: adapters[p].path for p in group},
            embedding_model=scope.embedding_model,
            progress=False,  # the bar over personas above says it
        )
    # Every example is stored now: this call only summarizes the whole run (no adapter used).
    return evaluate_method(
        engine, key, base, items, adapter_dir=None, embedding_model=scope.embedding_model
    )


def results_path(layout: storage.OutputLayout, study_name: str) -> Path:
    """``results/<study>/moe/moe_sparse_results.json``."""
    return layout.results_file(RESULTS_KIND, RESULTS_FILE, study_name=study_name)


def read_results(layout: storage.OutputLayout, study_name: str) -> dict[str, Any] | None:
    """The study's MoE results file, or None when there is none yet."""
    path = results_path(layout, study_name)
    try:
        data = read_json(path, limit=RECORD_MAX_BYTES, what="the MoE results file")
    except InputFileError as exc:
        if exc.missing:
            return None
        raise  # names the file, the line and the cause
    return data if isinstance(data, dict) else None


def write_results(layout: storage.OutputLayout, study_name: str, data: Mapping[str, Any]) -> Path:
    """Write the study's MoE results file atomically."""
    path = results_path(layout, study_name)
    with storage.atomic_file(path) as out:
        json.dump(data, out, indent=2)
    return path


def merge_all(
    engine: Any,
    layout: storage.OutputLayout,
    scope: MoeScope,
    adapters: Mapping[str, PersonaAdapter],
    settings: MoeSettings = MoeSettings(),
) -> tuple[dict[str, Any], dict[str, dict[str, PersonaAdapter]]]:
    """Route and merge both variants for every target persona (``hpo moe merge``).

    The candidates are the target personas, each with its own adapter.

    Returns:
        The results file's data (routes and merged adapters per variant), and the merged
        adapters per variant.

    Raises:
        ValueError: If a target persona has no adapter, or k does not fit the personas.
    """
    personas = list(scope.personas)
    lacking = [p.key for p in personas if p.key not in adapters]
    if lacking:
        raise ValueError(
            f"{len(lacking)} of {len(personas)} personas have no adapter "
            f"(e.g. {lacking[0]!r}); train them first (hpo personas train)"
        )
    keys = [p.key for p in personas]
    vectors = persona_vectors(engine, scope.dataset_id, personas, scope.embedding_model)
    data: dict[str, Any] = {
        "study": scope.study_name,
        "cluster_id": scope.cluster_id,
        "settings": settings.to_dict(),
        "embedding_model": scope.embedding_model or DEFAULT_EMBEDDING_MODEL,
        "n_personas": len(personas),
        "persona_adapters": {  # paths under the output root: no machine's folder
            k: {"path": storage.under_root(layout.root, a.path), "sha256": a.sha256}
            for k, a in sorted(adapters.items())
            if k in set(keys)
        },
        "variants": {},
    }
    merged: dict[str, dict[str, PersonaAdapter]] = {}
    for variant, include_self in VARIANTS.items():
        routes = plan_routes(keys, vectors, settings, include_self=include_self)
        merged[variant] = merge_variant(
            layout, scope.study_name, variant, routes, adapters, settings, scope.model
        )
        for entry in routes:
            entry["adapter"] = storage.under_root(
                layout.root, merged[variant][entry["target"]].path
            )
            entry["sha256"] = merged[variant][entry["target"]].sha256
        data["variants"][variant] = {"include_self": include_self, "routes": routes}
    return data, merged


def merged_from_results(
    data: Mapping[str, Any], root: Path
) -> dict[str, dict[str, PersonaAdapter]]:
    """The merged adapters a results file lists, per variant, under the output root ``root``
    (a results file of an older version names them by absolute paths: read as they are).

    Raises:
        ValueError: If a listed adapter is gone or changed since it was merged.
    """
    merged: dict[str, dict[str, PersonaAdapter]] = {}
    for variant, info in data.get("variants", {}).items():
        merged[variant] = {}
        for entry in info["routes"]:
            path = root / entry["adapter"]  # an absolute path stays itself
            if not path.is_dir():
                raise ValueError(f"{variant}: merged adapter {path} is missing; run hpo moe merge")
            sha, _ = storage.directory_sha256(path)
            if sha != entry["sha256"]:
                raise ValueError(
                    f"{variant}: merged adapter {path} changed since it was merged "
                    f"(sha256 {sha[:12]} != {entry['sha256'][:12]}); run hpo moe merge"
                )
            merged[variant][entry["target"]] = PersonaAdapter(entry["target"], path, sha)
    return merged


def evaluate_all(
    engine: Any,
    layout: storage.OutputLayout,
    scope: MoeScope,
    base: BaseModel,
    adapters: Mapping[str, PersonaAdapter],
    data: dict[str, Any],
    *,
    per_persona: bool = True,
) -> tuple[dict[str, Any], dict[str, MethodResult]]:
    """Evaluate both MoE variants (and the per-persona adapters) on the targets' test
    examples, and add their scores to the results data (``hpo moe evaluate``).

    Returns:
        The updated results data and the results by method name.
    """
    from evaluators.trials.promotion import evaluation_summary

    settings = MoeSettings(**data["settings"])
    merged = merged_from_results(data, layout.root)
    results: dict[str, MethodResult] = {}
    for variant in VARIANTS:
        if variant not in merged:
            raise ValueError(f"the MoE results have no variant {variant!r}; run hpo moe merge")
        results[variant] = evaluate_by_persona(
            engine, scope, base, variant, merged[variant], settings
        )
    if per_persona:
        own = {p.key: adapters[p.key] for p in scope.personas if p.key in adapters}
        results[PERSONA_ADAPTERS] = evaluate_by_persona(engine, scope, base, PERSONA_ADAPTERS, own)
    data = dict(data)
    data["eval_config"] = scope.eval_config.to_dict()
    data["eval_config_key"] = scope.eval_config.key
    data["n_test_examples"] = len(scope.items())
    data["evaluation"] = {
        name: {
            "run_method": result.method,
            **evaluation_summary(result),
            "per_persona": result.per_persona,
        }
        for name, result in results.items()
    }
    return data, results
