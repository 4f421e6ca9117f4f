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
:class:`~evaluators.evaluation.MethodResult` (:func:`baseline_report` adds the normalized
interval).

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

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storage
from evaluators.config import EvalConfig
from evaluators.evaluation import (
    EvalItem,
    MethodResult,
    RunKey,
    compare_methods,
    eval_items,
    evaluate_method,
    score_replies,
)
from evaluators.similarity import normalized, reference_ceiling
from trainers.base_model import BaseModel
from trainers.batching import prompt_pairs
from trainers.config import TrainConfig
from trainers.embedding import DEFAULT_EMBEDDING_MODEL
from trainers.prompt import build_prompt

BASE_MODEL = "base_model"
UNIFIED = "unified_adapter"
CLUSTER0 = "cluster0_adapter"
COPY_PERSONA = "copy_persona"
CEILING = "reference_ceiling"
SWAPPED = "persona_swapped"
BASELINES = (BASE_MODEL, UNIFIED, CLUSTER0, COPY_PERSONA, CEILING, SWAPPED)
"""Every baseline, in report order."""

ADAPTER_KIND_PREFIX = "baseline_"
"""Artifact kind of a baseline adapter: ``baseline_<name>``."""
SETUP_FILE = "baseline.json"
"""Written next to a baseline adapter: what it was trained on and its training config hash."""
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


def _named(result: MethodResult, name: str) -> MethodResult:
    return dataclasses.replace(result, method=name)


def _embedding_model(setup: BaselineSetup) -> str:
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
    digest = method_digest(base.name, adapter_sha256, items, _embedding_model(setup))
    result = evaluate_method(
        engine,
        run_key(setup, name, digest),
        base,
        items,
        adapter_dir=adapter_dir,
        embedding_model=setup.embedding_model,
    )
    return _named(result, name)


def evaluate_base_model(engine: Any, setup: BaselineSetup, base: BaseModel) -> MethodResult:
    """The base model with no adapter, on the test examples."""
    return evaluate_generated(engine, setup, base, BASE_MODEL, setup.items)


def _training_hash(config: TrainConfig, base_name: str, pairs: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    head = {"train_config": config.to_dict(), "base_model": base_name}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for pair in pairs:
        digest.update(json.dumps([pair.prompt, pair.target]).encode() + b"\n")
    return digest.hexdigest()


def _reusable(info: storage.ArtifactInfo | None, training_hash: str) -> bool:
    """Whether a recorded adapter is intact and was trained with the same config and data."""
    if info is None or not storage.verify_artifact(info):
        return False
    try:
        setup = json.loads((info.path / SETUP_FILE).read_text())
    except (OSError, ValueError):
        return False
    return bool(setup.get("training_hash") == training_hash)


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
    if info is not None and _reusable(info, training_hash):
        return info.path, info.sha256

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
    digest, size = storage.directory_sha256(target)
    with storage.session_scope(engine) as session:
        storage.record_artifact(
            session,
            kind=kind,
            path=target,
            sha256=digest,
            size_bytes=size,
            study_name=setup.study_name,
            trial_number=None,  # one per study: a new promoted trial's params retrain it
        )
    return target, digest


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


def _texts_digest(setup: BaselineSetup, name: str, items: Sequence[EvalItem]) -> str:
    return method_digest(name, None, items, _embedding_model(setup))


def evaluate_copy_persona(engine: Any, setup: BaselineSetup) -> MethodResult:
    """Every reply is the persona's own text (the prompts carry it, so the test-set hash
    covers it)."""
    items = setup.items
    texts = {p.key: p.text for p in setup.personas}
    replies = [texts[it.persona_key] for it in items]
    key = run_key(setup, COPY_PERSONA, _texts_digest(setup, COPY_PERSONA, items))
    result = score_replies(engine, key, items, replies, embedding_model=setup.embedding_model)
    return _named(result, COPY_PERSONA)


def ceiling_replies(items: Sequence[EvalItem]) -> list[str]:
    """For each example, the reference of the persona's next test example (by example id,
    wrapping around): another reference of the same persona.

    Raises:
        ValueError: If a persona has a single test example (there is no other reference).
    """
    by_persona: dict[str, list[EvalItem]] = {}
    for it in items:
        by_persona.setdefault(it.persona_key, []).append(it)
    alone = sorted(key for key, group in by_persona.items() if len(group) < 2)
    if alone:
        raise ValueError(
            f"the reference ceiling needs 2 test examples per persona; {len(alone)} persona(s) "
            f"have one (e.g. {alone[0]!r})"
        )
    other: dict[int, str] = {}
    for group in by_persona.values():
        ordered = sorted(group, key=lambda it: it.example_id)
        for i, it in enumerate(ordered):
            other[it.example_id] = ordered[(i + 1) % len(ordered)].reference
    return [other[it.example_id] for it in items]


def evaluate_reference_ceiling(engine: Any, setup: BaselineSetup) -> MethodResult:
    """What a perfect imitation of the persona could score: another reference as the reply."""
    items = setup.items
    key = run_key(setup, CEILING, _texts_digest(setup, CEILING, items))
    result = score_replies(
        engine, key, items, ceiling_replies(items), embedding_model=setup.embedding_model
    )
    return _named(result, CEILING)


def _persona_vectors(engine: Any, setup: BaselineSetup, personas: Sequence[Any]) -> Any:
    """Unit embeddings of the persona texts: stored ones read back, the rest embedded."""
    import numpy as np

    from trainers.embedding import embed

    model = _embedding_model(setup)
    with storage.session_scope(engine) as session:
        cached = storage.load_persona_embeddings(session, setup.dataset_id, model)
    missing = [p for p in personas if p.key not in cached]
    if missing:
        fresh = embed([p.text for p in missing], model)
        cached.update(zip([p.key for p in missing], fresh, strict=True))
    vectors = np.stack([np.asarray(cached[p.key], dtype=np.float32) for p in personas])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def swapped_partners(
    engine: Any, setup: BaselineSetup, candidates: Sequence[Any]
) -> dict[str, Any]:
    """Each evaluated persona's partner: the candidate farthest from it in embedding space.

    Args:
        engine: The storage engine (persona embeddings are read from it when stored).
        setup: The evaluated personas.
        candidates: The personas to choose from (usually the whole dataset).

    Returns:
        Persona key -> the partner persona (never the persona itself).

    Raises:
        ValueError: If there is no other candidate for some persona.
    """
    import numpy as np

    pool = sorted(candidates, key=lambda p: p.key)
    if len({p.key for p in pool}) < 2:
        raise ValueError(f"swapping personas needs 2 candidate personas, got {len(pool)}")
    own = list(setup.personas)
    pool_vectors = _persona_vectors(engine, setup, pool)
    own_vectors = _persona_vectors(engine, setup, own)
    similarity = own_vectors @ pool_vectors.T
    keys = np.asarray([p.key for p in pool])
    partners = {}
    for row, persona in zip(similarity, own, strict=True):
        row = np.where(keys == persona.key, np.inf, row)
        partners[persona.key] = pool[int(np.argmin(row))]  # first minimum: sorted key order
    return partners


def swapped_items(setup: BaselineSetup, partners: Mapping[str, Any]) -> list[EvalItem]:
    """The test examples with the partner's persona text in the prompt (same ids, contexts
    and references, so they pair with the own-persona examples)."""
    return [
        EvalItem(ex.id, p.key, build_prompt(partners[p.key].text, ex.context), ex.reply)
        for p in setup.personas
        for ex in p.examples
        if ex.split == "test"
    ]


def evaluate_persona_swapped(
    engine: Any, setup: BaselineSetup, base: BaseModel, candidates: Sequence[Any]
) -> MethodResult:
    """The base model answering each persona's prompts with a far persona's text."""
    items = swapped_items(setup, swapped_partners(engine, setup, candidates))
    return evaluate_generated(engine, setup, base, SWAPPED, items)


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
    reference: str = BASE_MODEL,
    embedding_model: str | None = None,
    items: Sequence[EvalItem] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """JSON-ready summary: each method with its interval, floor and normalized score (and its
    interval), the paired difference of each method against ``reference`` (Holm over the
    set), and the persona effect ``base_model - persona_swapped``.

    Args:
        results: Methods by name, all on the same examples (baselines, plus any other method
            such as the promoted adapter).
        reference: The method every other is compared with.
        embedding_model: The scorer, for the all-pairs reference ceiling (with ``items``).
        items: The test examples; when given, the all-pairs reference ceiling is added.
        seed: Seed of the resampling.
    """
    if reference not in results:
        raise ValueError(f"no method {reference!r} to compare with; have {sorted(results)}")
    pairs = [
        (reference, name) if name == SWAPPED else (name, reference)
        for name in results
        if name != reference
    ]
    methods = {
        name: {**result.to_dict(), "normalized_ci": _normalized_ci(result)}
        for name, result in results.items()
    }
    report: dict[str, Any] = {
        "methods": methods,
        "comparisons": compare_methods(results, pairs, seed=seed) if pairs else {},
    }
    effect = f"{reference} - {SWAPPED}"
    if effect in report["comparisons"]:
        report["persona_effect"] = report["comparisons"][effect]
    if items:
        report["reference_ceiling_all_pairs"] = reference_ceiling(
            [it.reference for it in items], [it.persona_key for it in items], embedding_model
        )
    return report
