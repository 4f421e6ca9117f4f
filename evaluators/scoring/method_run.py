"""Full evaluation of one method on a set of test examples, saved as it goes and resumable.

A method is the base model with an adapter (or none). Each batch's replies and similarities
are written to storage at once; a restarted evaluation skips the examples already done, and
the unique keys of storage make a duplicate row impossible. A run is stored under its method
name and the key of its :class:`~evaluators.config.EvalConfig`, so replies generated with other
settings (another decoding, another length) are never reused.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import storage
from evaluators.config import EvalConfig
from evaluators.scoring.diversity import Diversity, diversity
from evaluators.scoring.generation import generate_replies
from evaluators.scoring.similarity import (
    macro_mean,
    normalized,
    pairwise_similarity,
    persona_means,
    similarity_floor,
)
from evaluators.stats.estimates import Estimate, mean_ci
from trainers.base_model import BaseModel
from trainers.embedding import DEFAULT_EMBEDDING_MODEL
from trainers.prompt import ContextLoss, build_prompt, fit_prompts

log = logging.getLogger(__name__)


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
    context_loss: ContextLoss | None = None
    """The examples whose prompt lost context turns (or persona) to the prompt limit; None
    for methods that do not generate."""

    @property
    def mean_similarity_percent(self) -> float:
        """``mean_similarity`` in percent, to two decimals."""
        return round(100 * self.mean_similarity, 2)

    @property
    def floor_percent(self) -> float:
        """``floor`` in percent, to two decimals."""
        return round(100 * self.floor, 2)

    @property
    def normalized_similarity(self) -> float:
        """``(mean_similarity - floor) / (1 - floor)``: 0 at the floor, 1 at a perfect match."""
        return normalized(self.mean_similarity, self.floor)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (similarities in [-1, 1]; percent is x100)."""
        ci = self.similarity_ci
        return {
            "method": self.method,
            "mean_similarity": self.mean_similarity,
            "mean_similarity_percent": self.mean_similarity_percent,
            "mean_similarity_ci": None if ci is None else ci.to_dict(),
            "n_examples": self.n_examples,
            "n_personas": len(self.per_persona),
            "floor": self.floor,
            "floor_percent": self.floor_percent,
            "normalized": self.normalized_similarity,
            "mean_reply_words": self.diversity.mean_words,
            "diversity": self.diversity.to_dict(),
            "degenerate": self.diversity.degenerate,
            "per_persona": self.per_persona,
            "context_loss": None if self.context_loss is None else self.context_loss.to_dict(),
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


def generate_and_store(
    engine: Any,
    key: RunKey,
    base: BaseModel,
    items: Sequence[EvalItem],
    *,
    adapter_dir: Path | None,
    persona_adapters: Mapping[str, Path] | None = None,
    embedding_model: str | None = None,
    progress: bool = True,
) -> int:
    """Generate, score and store the items the run lacks (a crash resumes here); no summary.

    Args:
        engine: The storage engine.
        key: The run: study, method, data, and the :class:`EvalConfig` to generate with.
        base: The loaded base model.
        items: The examples to evaluate.
        adapter_dir: The method's peft adapter, or None for the bare base model.
        persona_adapters: Instead of ``adapter_dir`` (None), each item's persona key -> the
            adapter that answers it; the adapters share batches (peft's mixed batches).
        embedding_model: The model that scores similarity (default: the packaged one).
        progress: Show a progress bar over the batches (off when the caller shows its own).

    Returns:
        The run's id.

    Raises:
        trainers.adapter_check.AdapterError: An adapter does not load onto the base model;
            the run is closed as failed with the reason (:func:`_failed_on_error`), as it is
            on any other error.
    """
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
        with _failed_on_error(engine, run_id):
            generate_replies(
                base,
                [it.prompt for it in todo],
                eval_config=key.eval_config,
                adapter_dir=adapter_dir,
                row_adapters=None
                if persona_adapters is None
                else [persona_adapters[it.persona_key] for it in todo],
                progress=f"evaluating {key.method}" if progress else None,
                on_batch=save,
            )
    return run_id


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
    """Generate, score and store every item for one method (:func:`generate_and_store`),
    then mark the run complete and summarize it.

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
    run_id = generate_and_store(
        engine, key, base, items, adapter_dir=adapter_dir, embedding_model=embedding_model
    )
    result = _finished_result(engine, key, run_id, items, embedding_model, n_samples)
    limit = key.eval_config.prompt_limit
    fitted = fit_prompts(base.tokenizer, [it.prompt for it in items], limit, chat=base.chat)
    return dataclasses.replace(result, context_loss=ContextLoss.of(fitted, limit))


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
        with _failed_on_error(engine, run_id):
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


@contextmanager
def _failed_on_error(engine: Any, run_id: int) -> Iterator[None]:
    """Close run ``run_id`` as failed, with the reason, if the body raises (then re-raise).

    Nothing is written when the error is the database's outage: the run stays running and
    the pass that met it resumes it once the database answers (as a killed process's run is
    resumed). Failing to record the failure never hides the error itself.
    """
    try:
        yield
    except BaseException as exc:
        if not storage.is_disconnect(exc):
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            try:
                with storage.session_scope(engine) as session:
                    storage.fail_evaluation_run(session, run_id, reason)
            except Exception as record_error:  # the original error matters more
                log.warning("could not mark evaluation run %s failed: %s", run_id, record_error)
        raise


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


__all__ = [
    "EvalItem",
    "ExampleScore",
    "MethodResult",
    "RunKey",
    "eval_items",
    "evaluate_method",
    "generate_and_store",
    "score_replies",
]
