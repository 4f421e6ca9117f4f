"""Full evaluation of one method on a set of test examples, saved as it goes and resumable.

A method is the base model with an adapter (or none). Each batch's replies and similarities
are written to storage at once; a restarted evaluation skips the examples already done, and
the unique keys of storage make a duplicate row impossible. A run is stored under its method
name and the key of its :class:`~evaluators.config.EvalConfig`, so replies generated with other
settings (another decoding, another length) are never reused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import storage
from evaluators.config import EvalConfig
from evaluators.diversity import Diversity, diversity
from evaluators.generation import generate_replies
from evaluators.similarity import (
    macro_mean,
    normalized,
    pairwise_similarity,
    persona_means,
    similarity_floor,
)
from evaluators.stats import (
    Difference,
    Estimate,
    beats,
    holm_corrected,
    mean_ci,
    paired_difference,
)
from trainers.base_model import BaseModel
from trainers.embedding import DEFAULT_EMBEDDING_MODEL
from trainers.prompt import build_prompt


@dataclass(frozen=True)
class EvalItem:
    """One test example, ready to generate for."""

    example_id: int
    persona_key: str
    prompt: str
    reference: str


@dataclass(frozen=True)
class RunKey:
    """Identifies an evaluation run in storage (unique: evaluated once)."""

    study_name: str
    method: str
    dataset_id: int
    clustering_id: int | None
    cluster_id: int = -1
    trial_number: int = -1
    split: str = "test"
    eval_config: EvalConfig = EvalConfig()
    """How replies are generated; part of the key, so other settings never reuse rows."""

    @property
    def stored_method(self) -> str:
        """The method name in storage: ``method@<eval_config.key>``."""
        return f"{self.method}@{self.eval_config.key}"


@dataclass(frozen=True)
class ExampleScore:
    """One evaluated example of a method: what pairs it with another method's."""

    example_id: int
    persona_key: str
    similarity: float


@dataclass(frozen=True)
class MethodResult:
    """Similarity of one method on the examples, per persona and overall, and its diversity."""

    method: str
    run_id: int
    mean_similarity: float
    per_persona: dict[str, float]
    n_examples: int
    floor: float
    """Similarity of the replies to references of other personas (what unrelated text gets)."""
    diversity: Diversity
    """How varied the replies are; a degenerate method cannot win a comparison."""
    similarity_ci: Estimate | None
    """Persona-level bootstrap interval of ``mean_similarity`` (None under two personas)."""
    scores: tuple[ExampleScore, ...] = ()
    """Every example's similarity, for paired comparisons with other methods."""
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (similarities in [-1, 1]; percent is x100)."""
        ci = self.similarity_ci
        return {
            "method": self.method,
            "mean_similarity": self.mean_similarity,
            "mean_similarity_percent": round(100 * self.mean_similarity, 2),
            "mean_similarity_ci": None if ci is None else ci.to_dict(),
            "n_examples": self.n_examples,
            "n_personas": len(self.per_persona),
            "floor": self.floor,
            "floor_percent": round(100 * self.floor, 2),
            "normalized": normalized(self.mean_similarity, self.floor),
            "mean_reply_words": self.diversity.mean_words,
            "diversity": self.diversity.to_dict(),
            "degenerate": self.diversity.degenerate,
            "per_persona": self.per_persona,
            "samples": self.samples,
        }


def eval_items(personas: Sequence[Any], split: str = "test") -> list[EvalItem]:
    """The examples of one split of stored personas, with their prompts."""
    return [
        EvalItem(ex.id, persona.key, build_prompt(persona.text, ex.context), ex.reply)
        for persona in personas
        for ex in persona.examples
        if ex.split == split
    ]


def evaluate_method(
    engine: Any,
    key: RunKey,
    base: BaseModel,
    items: Sequence[EvalItem],
    *,
    adapter_dir: Path | None,
    embedding_model: str | None = None,
    n_samples: int = 5,
) -> MethodResult:
    """Generate, score and store every item for one method; resume where a crash left off.

    Args:
        engine: The storage engine.
        key: The run: study, method, data, and the :class:`EvalConfig` to generate with.
        base: The loaded base model.
        items: The examples to evaluate.
        adapter_dir: The method's peft adapter, or None for the bare base model.
        embedding_model: The model that scores similarity (default: the packaged one).
        n_samples: Example replies to keep in the summary.

    Raises:
        ValueError: If there are no items.
    """
    if not items:
        raise ValueError(f"no examples to evaluate {key.method} on")
    run_id, done = _open_run(engine, key, embedding_model)
    todo = [item for item in items if item.example_id not in done]

    def save(indices: list[int], replies: list[str]) -> None:
        chosen = [todo[i] for i in indices]
        sims = pairwise_similarity(replies, [it.reference for it in chosen], embedding_model)
        rows = [
            (it.example_id, reply, float(s))
            for it, reply, s in zip(chosen, replies, sims, strict=True)
        ]
        with storage.session_scope(engine) as session:
            storage.save_evaluation_results(session, run_id, rows)

    if todo:
        generate_replies(
            base,
            [it.prompt for it in todo],
            eval_config=key.eval_config,
            adapter_dir=adapter_dir,
            progress=f"evaluating {key.method}",
            on_batch=save,
        )
    return _finished_result(engine, key, run_id, items, embedding_model, n_samples)


def score_replies(
    engine: Any,
    key: RunKey,
    items: Sequence[EvalItem],
    replies: Sequence[str],
    *,
    embedding_model: str | None = None,
    n_samples: int = 5,
) -> MethodResult:
    """Score and store given replies as one method's, without generating (the baselines that
    answer with a fixed text, such as the persona itself or another reference).

    The replies are stored and summarized exactly like a generated method's, so they get the
    same floor, interval and diversity, and pair with other methods on the example ids.

    Raises:
        ValueError: If there are no items, or not one reply per item.
    """
    if not items:
        raise ValueError(f"no examples to evaluate {key.method} on")
    if len(replies) != len(items):
        raise ValueError(f"{len(replies)} replies for {len(items)} examples of {key.method}")
    run_id, done = _open_run(engine, key, embedding_model)
    todo = [(it, r) for it, r in zip(items, replies, strict=True) if it.example_id not in done]
    if todo:
        sims = pairwise_similarity(
            [r for _, r in todo], [it.reference for it, _ in todo], embedding_model
        )
        with storage.session_scope(engine) as session:
            storage.save_evaluation_results(
                session,
                run_id,
                [(it.example_id, r, float(s)) for (it, r), s in zip(todo, sims, strict=True)],
            )
    return _finished_result(engine, key, run_id, items, embedding_model, n_samples)


def _open_run(engine: Any, key: RunKey, embedding_model: str | None) -> tuple[int, set[int]]:
    """The run of ``key`` (created if new) and the ids of the examples it already has."""
    with storage.session_scope(engine) as session:
        run_id = storage.start_evaluation_run(
            session,
            study_name=key.study_name,
            method=key.stored_method,
            trial_number=key.trial_number,
            dataset_id=key.dataset_id,
            clustering_id=key.clustering_id,
            cluster_id=key.cluster_id,
            split=key.split,
            embedding_model=embedding_model or DEFAULT_EMBEDDING_MODEL,
        )
        return run_id, storage.done_example_ids(session, run_id)


def _finished_result(
    engine: Any,
    key: RunKey,
    run_id: int,
    items: Sequence[EvalItem],
    embedding_model: str | None,
    n_samples: int,
) -> MethodResult:
    """Mark the run complete and summarize its results on ``items``."""
    with storage.session_scope(engine) as session:
        storage.finish_evaluation_run(session, run_id)
        rows = storage.evaluation_results(session, run_id)
    wanted = {it.example_id for it in items}
    rows = [r for r in rows if r.example_id in wanted]
    keys = [r.persona_key for r in rows]
    similarities = [r.similarity for r in rows]
    per_persona = persona_means(keys, similarities)
    floor = similarity_floor(
        [r.generated for r in rows],
        [r.reference for r in rows],
        [r.persona_key for r in rows],
        embedding_model,
    )
    samples: list[dict[str, Any]] = [
        {
            "persona": r.persona_key,
            "generated": r.generated,
            "reference": r.reference,
            "similarity": round(r.similarity, 4),
        }
        for r in rows[:n_samples]
    ]
    return MethodResult(
        method=key.method,
        run_id=run_id,
        mean_similarity=macro_mean(per_persona),
        per_persona=per_persona,
        n_examples=len(rows),
        floor=floor,
        diversity=diversity([r.generated for r in rows]),
        similarity_ci=mean_ci(similarities, keys) if len(per_persona) >= 2 else None,
        scores=tuple(ExampleScore(r.example_id, r.persona_key, r.similarity) for r in rows),
        samples=samples,
    )


def compare(a: MethodResult, b: MethodResult, *, seed: int = 0) -> Difference:
    """The paired difference ``a - b`` in similarity, on the examples both methods scored.

    Raises:
        ValueError: If the two methods were not scored on the same examples (a comparison
            on different test sets is what this project refuses to make).
    """
    by_id = {s.example_id: s for s in b.scores}
    missing = {s.example_id for s in a.scores} ^ set(by_id)
    if missing:
        raise ValueError(
            f"{a.method} and {b.method} were scored on different examples "
            f"({len(missing)} not in both, e.g. example {min(missing)}): not comparable"
        )
    return paired_difference(
        [s.similarity for s in a.scores],
        [by_id[s.example_id].similarity for s in a.scores],
        [s.persona_key for s in a.scores],
        seed=seed,
    )


def compare_methods(
    results: Mapping[str, MethodResult], pairs: Sequence[tuple[str, str]], *, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Paired comparisons ``a - b`` of methods, Holm-corrected among themselves.

    A method beats another when :func:`evaluators.stats.beats` holds for the difference and
    the method is not degenerate (its one common reply would win by repeating itself).

    Args:
        results: Evaluated methods by name, all on the same examples.
        pairs: ``(a, b)`` names to compare.
        seed: Seed of the resampling.

    Returns:
        For each pair, named ``"a - b"``: the difference (also in percent points), its
        interval, p-value, Holm p-value and ``"beats"``.
    """
    for name in {n for pair in pairs for n in pair}:
        if name not in results:
            raise ValueError(f"no evaluated method {name!r} to compare; have {sorted(results)}")
    diffs = holm_corrected(
        {f"{a} - {b}": compare(results[a], results[b], seed=seed) for a, b in pairs}
    )
    report: dict[str, dict[str, Any]] = {}
    for (a, _), (name, diff) in zip(pairs, diffs.items(), strict=True):
        report[name] = {
            **diff.to_dict(),
            "mean_percent_points": round(100 * diff.mean, 2),
            "ci_percent_points": [round(100 * diff.low, 2), round(100 * diff.high, 2)],
            "beats": beats(diff) and not results[a].diversity.degenerate,
        }
    return report
