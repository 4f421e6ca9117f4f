"""A method's evaluation in real storage with the tiny model: diversity and interval beside the
similarity, resume under the same EvalConfig, a new run under another; paired comparisons."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import storage
from evaluators.config import EvalConfig
from evaluators.scoring.diversity import diversity
from evaluators.scoring.method_run import (
    ExampleScore,
    MethodResult,
    RunKey,
    eval_items,
    evaluate_method,
)
from evaluators.stats.comparison import compare, compare_methods
from evaluators.trials.promotion import PromotedTrial, evaluate_promoted

SHORT = EvalConfig(max_new_tokens=8, batch_size=4)


@dataclass(frozen=True)
class _Example:
    context: str
    reply: str
    split: str


@dataclass(frozen=True)
class _Persona:
    persona_id: str
    text: str
    examples: tuple[_Example, ...] = field(default_factory=tuple)


PERSONAS = [
    _Persona(
        "hiker",
        "I love hiking. I have a dog.",
        (
            _Example("Hi!\nWhat do you do on weekends?", "I hike with my dog.", "test"),
            _Example("Do you have pets?", "Yes, a dog who loves trails.", "test"),
            _Example("Hello.", "Hi, just back from a hike.", "train"),
        ),
    ),
    _Persona(
        "chef",
        "I am a chef. I cook pasta.",
        (
            _Example("What is your job?", "I cook in a restaurant.", "test"),
            _Example("What did you eat?", "Fresh pasta I made myself.", "test"),
            _Example("Hey.", "Hey, I am cooking right now.", "train"),
        ),
    ),
    _Persona(
        "musician",
        "I play the guitar in a band.",
        (
            _Example("Do you like music?", "I play guitar every day.", "test"),
            _Example("Any plans tonight?", "A gig with my band.", "test"),
            _Example("Hi.", "Hi, tuning my guitar.", "train"),
        ),
    ),
]


@pytest.fixture
def stored(sqlite_url: str) -> tuple[Any, int, list[Any]]:
    """An engine with the three personas stored, their dataset id and stored personas."""
    engine = storage.open_storage(sqlite_url)
    with storage.session_scope(engine) as session:
        dataset_id = storage.save_dataset(
            session, name="eval", sha256="e" * 64, source="test", personas=PERSONAS
        )
        personas = storage.load_personas(session, dataset_id)
    yield engine, dataset_id, personas
    storage.dispose_engines()


def _run_count(engine: Any, study: str) -> list[Any]:
    with storage.session_scope(engine) as session:
        return storage.list_evaluation_runs(session, study)


def test_same_config_resumes_and_another_decoding_starts_a_new_run(
    stored: tuple[Any, int, list[Any]], tiny_base: Any
) -> None:
    engine, dataset_id, personas = stored
    items = eval_items(personas, "test")
    key = RunKey("s", "base_model", dataset_id, None, eval_config=SHORT)
    first = evaluate_method(engine, key, tiny_base, items, adapter_dir=None)
    assert first.n_examples == len(items) == 6

    again = evaluate_method(engine, key, tiny_base, items, adapter_dir=None)
    assert (again.run_id, again.mean_similarity) == (first.run_id, first.mean_similarity)

    penalized = EvalConfig(**{**SHORT.to_dict(), "repetition_penalty": 1.5})
    other = evaluate_method(
        engine,
        RunKey("s", "base_model", dataset_id, None, eval_config=penalized),
        tiny_base,
        items,
        adapter_dir=None,
    )
    assert other.run_id != first.run_id
    runs = _run_count(engine, "s")
    assert [r.method for r in runs] == [f"base_model@{SHORT.key}", f"base_model@{penalized.key}"]
    with storage.session_scope(engine) as session:
        for run in runs:
            assert len(storage.evaluation_results(session, run.id)) == len(items)


def test_result_reports_diversity_and_a_persona_interval(
    stored: tuple[Any, int, list[Any]], tiny_base: Any
) -> None:
    engine, dataset_id, personas = stored
    items = eval_items(personas, "test")
    key = RunKey("d", "base_model", dataset_id, None, eval_config=SHORT)
    result = evaluate_method(engine, key, tiny_base, items, adapter_dir=None)
    with storage.session_scope(engine) as session:
        replies = [r.generated for r in storage.evaluation_results(session, result.run_id)]
    assert result.diversity == diversity(replies)
    assert {s.example_id for s in result.scores} == {it.example_id for it in items}
    ci = result.similarity_ci
    assert ci is not None and ci.n_personas == 3
    assert ci.low <= result.mean_similarity <= ci.high
    assert ci.mean == pytest.approx(result.mean_similarity)
    summary = result.to_dict()
    assert summary["diversity"]["top_reply_share"] == result.diversity.top_reply_share
    assert summary["degenerate"] is result.diversity.degenerate
    assert summary["mean_reply_words"] == result.diversity.mean_words
    assert summary["mean_similarity_ci"]["low"] == ci.low


def test_no_items_is_an_error(stored: tuple[Any, int, list[Any]], tiny_base: Any) -> None:
    engine, dataset_id, _ = stored
    with pytest.raises(ValueError, match="no examples to evaluate base_model"):
        evaluate_method(
            engine, RunKey("n", "base_model", dataset_id, None), tiny_base, [], adapter_dir=None
        )


def _method(name: str, similarities: list[float], replies: list[str]) -> MethodResult:
    """A result of 20 personas x 3 examples with the given similarities (no model needed)."""
    scores = tuple(
        ExampleScore(example_id=i, persona_key=f"p{i // 3:02d}", similarity=s)
        for i, s in enumerate(similarities)
    )
    return MethodResult(
        method=name,
        run_id=0,
        mean_similarity=sum(similarities) / len(similarities),
        per_persona={},
        n_examples=len(scores),
        floor=0.0,
        diversity=diversity(replies),
        similarity_ci=None,
        scores=scores,
    )


def test_comparisons_pair_examples_and_a_degenerate_method_cannot_win() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    base_scores = rng.uniform(0.3, 0.6, 60)
    varied = [f"reply {i}" for i in range(60)]
    base = _method("base_model", list(base_scores), varied)
    better = _method("lora", list(base_scores + 0.05 + rng.normal(0, 0.01, 60)), varied)
    # the same scores, but one reply repeated for a fifth of the examples
    same_reply = ["I like it."] * 12 + varied[12:]
    collapsed = _method(
        "collapsed", list(better.scores[i].similarity for i in range(60)), same_reply
    )
    # a comparison pairs by example id, whatever the order of the scores
    shuffled = MethodResult(**{**better.__dict__, "scores": better.scores[::-1]})
    forward, backward = compare(better, base), compare(shuffled, base)
    for name in ("mean", "low", "high", "p_value"):
        assert getattr(backward, name) == pytest.approx(getattr(forward, name)), name

    report = compare_methods(
        {"lora": better, "collapsed": collapsed, "base_model": base},
        [("lora", "base_model"), ("collapsed", "base_model")],
        min_effect=2.0,
    )
    lora, bad = report["lora - base_model"], report["collapsed - base_model"]
    assert lora["low"] > 0 and lora["beats"]
    assert lora["p_holm"] >= lora["p_margin"] and lora["min_effect_percent_points"] == 2.0
    assert lora["mean_percent_points"] == pytest.approx(5, abs=0.5)
    assert bad["low"] > 0 and not bad["beats"]


def test_methods_on_different_examples_are_not_compared() -> None:
    a = _method("a", [0.5] * 6, ["x", "y", "z", "u", "v", "w"])
    b = _method("b", [0.4] * 5, ["x", "y", "z", "u", "v"])
    with pytest.raises(ValueError, match=r"different examples .*example 5"):
        compare(a, b)
    with pytest.raises(ValueError, match="no evaluated method 'c'"):
        compare_methods({"a": a, "b": b}, [("a", "c")], min_effect=2.0)


def test_promoted_report_has_config_diversity_and_the_paired_comparison(
    stored: tuple[Any, int, list[Any]], tiny_base: Any, zero_adapter: Path, tmp_path: Path
) -> None:
    """A zero adapter (lora_B = 0) changes nothing: the comparison must find no difference."""
    engine, dataset_id, personas = stored
    digest, _ = storage.directory_sha256(zero_adapter)
    trial = PromotedTrial("promo", 3, 1.5, {"lora_rank": 8}, zero_adapter, digest)
    report, path = evaluate_promoted(
        engine,
        storage.OutputLayout(tmp_path),
        trial,
        base=tiny_base,
        dataset_id=dataset_id,
        clustering_id=None,
        cluster_id=1,
        personas=personas,
        eval_config=SHORT,
    )
    data = json.loads(path.read_text())
    assert data == report.to_dict(tmp_path)
    assert report.eval_config == SHORT and report.promoted.trial == trial
    assert data["eval_config"] == SHORT.to_dict()
    assert data["eval_config_key"] == SHORT.key
    lora, base = data["methods"]["cluster_lora"], data["methods"]["base_model"]
    assert lora["mean_similarity"] == pytest.approx(base["mean_similarity"])
    for method in (lora, base):
        assert set(method["diversity"]) >= {"distinct_1", "distinct_2", "top_reply_share"}
        ci = method["mean_similarity_ci"]
        assert ci["low"] <= method["mean_similarity"] <= ci["high"]
    # one family in the file, named for what it is, and saying which family is not it
    assert data["tested_family"] == "promotion_comparisons"
    assert "comparisons" not in data and "holm_family" not in data
    assert "decision_comparisons" in data["family_note"]
    comparison = data["promotion_comparisons"]["cluster_lora - base_model"]
    assert comparison["mean"] == pytest.approx(0.0, abs=1e-6)
    assert comparison["low"] <= 0 <= comparison["high"]
    assert comparison["p_holm"] is not None
    assert comparison["beats"] is False
    assert report.comparisons["cluster_lora - base_model"].beats is False
    runs = _run_count(engine, "promo")
    assert {r.method for r in runs} == {f"cluster_lora@{SHORT.key}", f"base_model@{SHORT.key}"}
