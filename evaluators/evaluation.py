"""Full evaluation of one method on a set of test examples, saved as it goes and resumable.

A method is the base model with an adapter (or none). Each batch's replies and similarities
are written to storage at once; a restarted evaluation skips the examples already done, and
the unique keys of storage make a duplicate row impossible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import storage
from evaluators.generation import generate_replies
from evaluators.similarity import (
    macro_mean,
    normalized,
    pairwise_similarity,
    persona_means,
    similarity_floor,
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


@dataclass(frozen=True)
class MethodResult:
    """Similarity of one method on the examples, per persona and overall."""

    method: str
    run_id: int
    mean_similarity: float
    per_persona: dict[str, float]
    n_examples: int
    mean_reply_words: float
    floor: float
    """Similarity of the replies to references of other personas (what unrelated text gets)."""
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (similarities in [-1, 1]; percent is x100)."""
        return {
            "method": self.method,
            "mean_similarity": self.mean_similarity,
            "mean_similarity_percent": round(100 * self.mean_similarity, 2),
            "n_examples": self.n_examples,
            "n_personas": len(self.per_persona),
            "floor": self.floor,
            "floor_percent": round(100 * self.floor, 2),
            "normalized": normalized(self.mean_similarity, self.floor),
            "mean_reply_words": self.mean_reply_words,
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
    batch_size: int = 32,
    max_new_tokens: int = 40,
    n_samples: int = 5,
) -> MethodResult:
    """Generate, score and store every item for one method; resume where a crash left off."""
    with storage.session_scope(engine) as session:
        run_id = storage.start_evaluation_run(
            session,
            study_name=key.study_name,
            method=key.method,
            trial_number=key.trial_number,
            dataset_id=key.dataset_id,
            clustering_id=key.clustering_id,
            cluster_id=key.cluster_id,
            split=key.split,
            embedding_model=embedding_model or DEFAULT_EMBEDDING_MODEL,
        )
        done = storage.done_example_ids(session, run_id)
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
            adapter_dir=adapter_dir,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            progress=f"evaluating {key.method}",
            on_batch=save,
        )
    with storage.session_scope(engine) as session:
        storage.finish_evaluation_run(session, run_id)
        rows = storage.evaluation_results(session, run_id)
    wanted = {it.example_id for it in items}
    rows = [r for r in rows if r.example_id in wanted]
    per_persona = persona_means([r.persona_key for r in rows], [r.similarity for r in rows])
    words = [len(r.generated.split()) for r in rows]
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
        mean_reply_words=sum(words) / len(words) if words else 0.0,
        floor=floor,
        samples=samples,
    )
