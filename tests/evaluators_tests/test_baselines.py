"""Baselines on the identical test examples, with the real tiny model, real peft adapters and
real storage: every baseline lands with its interval, a second run is served from the cache
(no generation, no training), and a changed EvalConfig, adapter or test set is not."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import evaluators.scoring.method_run
import storage
import trainers.recipe
from evaluators.baselines import suite as baselines
from evaluators.baselines.suite import (
    BASE_MODEL,
    BASELINES,
    CEILING,
    CLUSTER0,
    COPY_PERSONA,
    SWAPPED,
    UNIFIED,
    BaselineSetup,
    baseline_report,
    ceiling_replies,
    evaluate_base_model,
    evaluate_baselines,
    items_hash,
    method_digest,
    run_key,
    swapped_partners,
)
from evaluators.config import EvalConfig
from evaluators.scoring.method_run import EvalItem
from evaluators.scoring.similarity import pairwise_similarity
from tests.conftest import write_small_dataset
from trainers.config import DataConfig, TrainConfig
from trainers.data import SplitConfig, load_dataset
from trainers.embedding import embed

SHORT = EvalConfig(max_new_tokens=8, batch_size=8)
QUICK = TrainConfig(
    epochs=1,
    batch_size=4,
    evals_per_epoch=1,
    data=DataConfig(max_train_per_persona=2, max_val_per_persona=1, max_seq_length=128),
)


@dataclasses.dataclass
class Counts:
    """Calls of the expensive parts, counted around the real functions."""

    generate: int = 0
    train: int = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    seen = Counts()
    real_generate, real_train = (
        evaluators.scoring.method_run.generate_replies,
        trainers.recipe.train_lora,
    )

    def generate(*args: Any, **kwargs: Any) -> list[str]:
        seen.generate += 1
        return real_generate(*args, **kwargs)

    def train(*args: Any, **kwargs: Any) -> Any:
        seen.train += 1
        return real_train(*args, **kwargs)

    monkeypatch.setattr(evaluators.scoring.method_run, "generate_replies", generate)
    monkeypatch.setattr(trainers.recipe, "train_lora", train)
    return seen


@pytest.fixture
def stored(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Any, int, list[Any]]]:
    """10 generated personas (2 test examples each) stored: engine, dataset id, personas."""
    path = write_small_dataset(tmp_path / "small.jsonl", n_personas=10, examples=8)
    dataset = load_dataset(path, split=SplitConfig(n_test=2)).dataset
    engine = storage.open_storage(sqlite_url)
    with storage.session_scope(engine) as session:
        dataset_id = storage.save_dataset(
            session,
            name="small",
            sha256=dataset.sha256,
            source=str(path),
            personas=dataset.personas,
        )
        personas = storage.load_personas(session, dataset_id)
    yield engine, dataset_id, personas
    storage.dispose_engines()


def _setup(dataset_id: int, personas: list[Any], config: EvalConfig = SHORT) -> BaselineSetup:
    """The baselines of a study on cluster 4, whose personas are the first four."""
    return BaselineSetup(
        study_name="study",
        dataset_id=dataset_id,
        clustering_id=None,
        cluster_id=4,
        personas=personas[:4],
        eval_config=config,
    )


def _run_all(
    stored: tuple[Any, int, list[Any]], base: Any, layout: storage.OutputLayout, config: TrainConfig
) -> dict[str, Any]:
    engine, dataset_id, personas = stored
    return evaluate_baselines(
        engine,
        layout,
        _setup(dataset_id, personas),
        base,
        all_personas=personas,
        cluster0_personas=personas[6:],
        train_config=config,
        source_trial=3,
        progress=False,
    )


@pytest.mark.slow
def test_every_baseline_lands_with_its_interval_and_is_cached(
    stored: tuple[Any, int, list[Any]], counts: Counts, tiny_base: Any, tmp_path: Path
) -> None:
    engine, dataset_id, personas = stored
    layout = storage.OutputLayout(tmp_path / "out")
    first = _run_all(stored, tiny_base, layout, QUICK)
    assert list(first) == list(BASELINES)
    assert (counts.generate, counts.train) == (4, 2)  # base, swapped, unified, cluster 0
    items = _setup(dataset_id, personas).items
    assert len(items) == 8
    for name, result in first.items():
        assert result.method == name
        assert {s.example_id for s in result.scores} == {it.example_id for it in items}, name
        ci = result.similarity_ci
        assert ci is not None and ci.n_personas == 4, name
        assert ci.low <= result.mean_similarity <= ci.high, name

    # copy-persona and ceiling replies are exactly the persona text / another reference
    texts = {p.key: p.text for p in personas}
    with storage.session_scope(engine) as session:
        copied = storage.evaluation_results(session, first[COPY_PERSONA].run_id)
        ceiling = storage.evaluation_results(session, first[CEILING].run_id)
    assert all(r.generated == texts[r.persona_key] for r in copied)
    assert all(r.generated != r.reference for r in ceiling)
    by_id = {it.example_id: it for it in items}
    expected = pairwise_similarity(ceiling_replies(items), [it.reference for it in items])
    got = {s.example_id: s.similarity for s in first[CEILING].scores}
    assert [got[it.example_id] for it in items] == pytest.approx(list(expected), abs=1e-5)
    assert set(by_id) == set(got)

    # the adapters are recorded with their sha256 and what they were trained on
    for name, n_personas in ((UNIFIED, 10), (CLUSTER0, 4)):
        with storage.session_scope(engine) as session:
            info = storage.get_artifact(
                session, kind=f"baseline_{name}", study_name="study", trial_number=None
            )
        assert info is not None
        # recorded relative to the output root, never as a machine-local path
        assert layout.root / info.path == layout.baseline_adapter_dir("study", name)
        local = storage.fetch_artifact(layout, info.path, info.sha256)
        assert local == layout.baseline_adapter_dir("study", name)
        record = json.loads((local / baselines.SETUP_FILE).read_text())
        assert (record["n_personas"], record["source_trial"]) == (n_personas, 3)

    # the second time everything comes from the cache: no generation, no training
    second = _run_all(stored, tiny_base, layout, QUICK)
    assert (counts.generate, counts.train) == (4, 2)
    for name in BASELINES:
        assert second[name].run_id == first[name].run_id
        assert second[name].mean_similarity == pytest.approx(first[name].mean_similarity)

    # another training config: both adapters are retrained, their sha256 changes, and
    # their evaluations are new runs; the rest stays cached
    changed = dataclasses.replace(QUICK, learning_rate=5e-3)
    third = _run_all(stored, tiny_base, layout, changed)
    assert (counts.generate, counts.train) == (6, 4)
    for name in BASELINES:
        renewed = name in (UNIFIED, CLUSTER0)
        assert (third[name].run_id != first[name].run_id) is renewed, name

    report = baseline_report(third, items=items)
    assert report["tested_family"] == "promotion_comparisons"
    assert report["promotion_comparisons"] == {}  # no hypothesis
    described = report["described"]
    assert set(described) == {
        f"{name} - {BASE_MODEL}" for name in BASELINES if name not in (BASE_MODEL, SWAPPED)
    } | {f"{BASE_MODEL} - {SWAPPED}"}
    assert all(d["p_holm"] is None and d["tested"] is False for d in described.values())
    assert report["persona_effect"] == described[f"{BASE_MODEL} - {SWAPPED}"]
    for method in report["methods"].values():
        low, high = method["normalized_ci"]
        assert low <= method["normalized"] <= high
    assert 0 < report["reference_ceiling_all_pairs"] <= 1


def test_another_eval_config_is_not_served_from_cache(
    stored: tuple[Any, int, list[Any]], counts: Counts, tiny_base: Any
) -> None:
    engine, dataset_id, personas = stored
    setup = _setup(dataset_id, personas)
    first = evaluate_base_model(engine, setup, tiny_base)
    again = evaluate_base_model(engine, setup, tiny_base)
    assert counts.generate == 1 and again.run_id == first.run_id
    other = evaluate_base_model(
        engine,
        _setup(dataset_id, personas, dataclasses.replace(SHORT, max_new_tokens=6)),
        tiny_base,
    )
    assert counts.generate == 2 and other.run_id != first.run_id
    fewer = dataclasses.replace(setup, personas=personas[:3])
    evaluate_base_model(engine, fewer, tiny_base)
    assert counts.generate == 3  # another test set: another run


def _items() -> list[EvalItem]:
    return [
        EvalItem(1, "a", "Persona: A\nB:", "one"),
        EvalItem(2, "a", "Persona: A\nB:", "two"),
        EvalItem(3, "a", "Persona: A\nB:", "three"),
        EvalItem(4, "b", "Persona: B\nB:", "four"),
        EvalItem(5, "b", "Persona: B\nB:", "five"),
    ]


def test_the_run_digest_covers_adapter_test_set_base_and_scorer() -> None:
    items = _items()
    digest = method_digest("tiny", "f" * 64, items, "m")
    assert method_digest("tiny", "f" * 64, items[::-1], "m") == digest  # order does not matter
    changed_reference = [dataclasses.replace(items[0], reference="uno"), *items[1:]]
    changed_prompt = [dataclasses.replace(items[0], prompt="Persona: C\nB:"), *items[1:]]
    others = {
        method_digest("tiny", "e" * 64, items, "m"),
        method_digest("tiny", None, items, "m"),
        method_digest("other", "f" * 64, items, "m"),
        method_digest("tiny", "f" * 64, items, "mpnet"),
        method_digest("tiny", "f" * 64, items[:4], "m"),
        method_digest("tiny", "f" * 64, changed_reference, "m"),
        method_digest("tiny", "f" * 64, changed_prompt, "m"),
    }
    assert digest not in others and len(others) == 7
    assert items_hash(items) != items_hash(changed_reference)


def test_ceiling_replies_are_the_next_reference_of_the_same_persona() -> None:
    items = _items()
    assert ceiling_replies(items) == ["two", "three", "one", "five", "four"]
    with pytest.raises(ValueError, match=r"2 test examples per persona; 1 persona\(s\).*'c'"):
        ceiling_replies([*items, EvalItem(6, "c", "Persona: C\nB:", "six")])


def test_run_names_fit_the_method_column() -> None:
    setup = BaselineSetup("s", 1, None, -1, [])
    key = run_key(setup, UNIFIED, "0" * 12)
    assert key.stored_method == f"{UNIFIED}.{'0' * 12}@{EvalConfig().key}"
    assert all(len(run_key(setup, name, "0" * 12).stored_method) <= 50 for name in BASELINES)
    with pytest.raises(ValueError, match="too long"):
        run_key(setup, "x" * 30, "0" * 12)


@dataclasses.dataclass(frozen=True)
class _P:
    key: str
    text: str


def test_swapped_partner_is_the_farthest_other_persona(sqlite_url: str) -> None:
    engine = storage.open_storage(sqlite_url)
    pool = [
        _P("dogs", "I love my dogs and walk them every morning."),
        _P("puppies", "I have two puppies and I walk them in the park."),
        _P("code", "I write compilers in Rust at a software company."),
        _P("alone", "I write compilers."),
    ]
    setup = BaselineSetup("s", 1, None, -1, pool[:2])
    partners = swapped_partners(engine, setup, pool)
    vectors = dict(zip([p.key for p in pool], embed([p.text for p in pool]), strict=True))
    for own in setup.personas:
        others = [p.key for p in pool if p.key != own.key]
        farthest = min(others, key=lambda k: float(vectors[own.key] @ vectors[k]))
        assert partners[own.key].key == farthest
        assert farthest in ("code", "alone")  # a dog owner's farthest persona writes compilers
    assert swapped_partners(engine, setup, pool[::-1]) == partners  # order-free
    with pytest.raises(ValueError, match="2 candidate personas"):
        swapped_partners(engine, setup, pool[:1])
    storage.dispose_engines()


def test_baseline_report_tests_the_rule_s_family_and_describes_the_yardsticks(
    stored: tuple[Any, int, list[Any]],
) -> None:
    """Stored replies, nothing generated: the promoted adapter is tested against the unified
    adapter, cluster 0 and the base model only (Holm over those three, as the promotion does);
    the yardsticks and the other baselines are described against the base model, and adding
    the yardsticks changes nothing tested."""
    from evaluators.scoring.method_run import RunKey, eval_items, score_replies
    from evaluators.trials.promotion import TRIAL_METHOD, rule_family

    engine, dataset_id, personas = stored
    items = eval_items(personas, "test")
    texts = {p.key: p.text for p in personas}
    keys = sorted(texts)
    far = {k: texts[keys[(i + 5) % len(keys)]] for i, k in enumerate(keys)}

    def scored(method: str, reply: Any) -> Any:
        key = RunKey("study", method, dataset_id, None, 4, eval_config=SHORT)
        return score_replies(engine, key, items, [reply(it) for it in items])

    rule = {
        TRIAL_METHOD: scored(TRIAL_METHOD, lambda it: it.reference),
        BASE_MODEL: scored(BASE_MODEL, lambda it: texts[it.persona_key]),
        UNIFIED: scored(UNIFIED, lambda it: far[it.persona_key]),
        CLUSTER0: scored(CLUSTER0, lambda it: f"{texts[it.persona_key]} {it.reference}"),
    }
    yardsticks = {
        COPY_PERSONA: scored(COPY_PERSONA, lambda it: texts[it.persona_key]),
        CEILING: scored(CEILING, lambda it: f"{it.reference} Yes."),
        SWAPPED: scored(SWAPPED, lambda it: far[it.persona_key]),
    }
    before = baseline_report(rule, evaluated=TRIAL_METHOD)
    family = [f"{TRIAL_METHOD} - {b}" for b in (UNIFIED, CLUSTER0, BASE_MODEL)]
    assert before["tested_family"] == "promotion_comparisons"
    assert list(before["promotion_comparisons"]) == family
    assert "decision_comparisons" in before["family_note"]  # and says which family is not it
    tested, _ = rule_family(dict(rule), TRIAL_METHOD)
    for name, c in before["promotion_comparisons"].items():
        assert c["p_holm"] == pytest.approx(tested[name].difference.p_holm)
    after = baseline_report({**rule, **yardsticks}, evaluated=TRIAL_METHOD)
    assert after["promotion_comparisons"] == before["promotion_comparisons"]
    assert set(after["described"]) == {
        f"{UNIFIED} - {BASE_MODEL}",
        f"{CLUSTER0} - {BASE_MODEL}",
        f"{COPY_PERSONA} - {BASE_MODEL}",
        f"{CEILING} - {BASE_MODEL}",
        f"{BASE_MODEL} - {SWAPPED}",
    }
    assert all(d["tested"] is False and "beats" not in d for d in after["described"].values())
    assert after["persona_effect"] == after["described"][f"{BASE_MODEL} - {SWAPPED}"]
    # A study of cluster 0: the cluster-0 adapter is cluster 0 itself, described, not tested.
    own = baseline_report(rule, evaluated=TRIAL_METHOD, tuned_cluster=0)
    assert list(own["promotion_comparisons"]) == [
        f"{TRIAL_METHOD} - {UNIFIED}",
        f"{TRIAL_METHOD} - {BASE_MODEL}",
    ]
    assert f"{CLUSTER0} - {BASE_MODEL}" in own["described"]
    with pytest.raises(ValueError, match="no method 'moe'"):
        baseline_report(rule, evaluated="moe")


def test_short_all_different_replies_on_few_examples_are_not_degenerate(
    stored: tuple[Any, int, list[Any]],
) -> None:
    """The study's 8 test examples (4 personas) answered with short replies, stored and
    scored (nothing generated): all different is 12.5% each, no repeat, not degenerate; one
    short reply given three times is."""
    from evaluators.scoring.method_run import RunKey, score_replies

    engine, dataset_id, personas = stored
    items = _setup(dataset_id, personas).items
    assert len(items) == 8
    short = ["Yes.", "No.", "Sure.", "Maybe.", "I do.", "Why?", "Nice.", "Okay."]

    def scored(method: str, replies: list[str]) -> Any:
        key = RunKey("study", method, dataset_id, None, 4, eval_config=SHORT)
        return score_replies(engine, key, items, replies)

    varied = scored("short_varied", short)
    assert varied.diversity.top_reply_share == pytest.approx(0.125)
    assert not varied.diversity.degenerate
    assert varied.to_dict()["degenerate"] is False
    repeated = scored("short_repeated", ["Yes."] * 3 + short[3:])
    assert repeated.diversity.degenerate
