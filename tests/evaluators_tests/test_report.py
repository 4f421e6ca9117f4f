"""The comparison report: the decision rule on made-up comparisons (every branch, a degenerate
winner refused), and the report on real storage with stored replies (nothing generated):
rows found by their runs, missing methods listed, figure rendered to a real PNG."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import storage
from evaluators.baselines.suite import CLUSTER0, UNIFIED
from evaluators.config import EvalConfig
from evaluators.report import build as report
from evaluators.report import decision
from evaluators.report.decision import (
    BASE,
    BASE_NOT_BEATEN,
    CLUSTER,
    COMPARE_WITH_MOE,
    INCOMPLETE,
    MOE_MAIN,
    MOE_SELF,
    Paired,
    Standing,
    decide,
    rule_comparisons,
)
from evaluators.scoring.method_run import RunKey, eval_items, score_replies
from evaluators.trials.promotion import TRIAL_METHOD, rule_family
from tests.conftest import write_small_dataset
from trainers.data import SplitConfig, load_dataset

WIN = Paired(0.05, 0.02, 0.08, True)
LOSE = Paired(-0.01, -0.03, 0.01, False)


def _methods(**overrides: Standing) -> dict[str, Standing]:
    methods = {
        CLUSTER: Standing(0.60),
        UNIFIED: Standing(0.55),
        CLUSTER0: Standing(0.50),
        MOE_SELF: Standing(0.62),
        BASE: Standing(0.40),
    }
    methods.update({k.replace("__", " "): v for k, v in overrides.items()})
    return methods


def _diffs(
    cluster_ok: bool = True,
    moe: Paired = LOSE,
    back: Paired = LOSE,
    cluster_base: Paired = WIN,
    moe_base: Paired = WIN,
) -> dict[str, Paired]:
    return {
        f"{CLUSTER} - {UNIFIED}": WIN if cluster_ok else LOSE,
        f"{CLUSTER} - {CLUSTER0}": WIN,
        f"{MOE_SELF} - {CLUSTER}": moe,
        f"{CLUSTER} - {MOE_SELF}": back,
        f"{CLUSTER} - {BASE}": cluster_base,
        f"{MOE_SELF} - {BASE}": moe_base,
    }


def test_cluster_beats_both_then_moe_that_beats_it_is_main() -> None:
    d = decide(_methods(), _diffs(moe=WIN))
    assert (d.branch, d.main_result) == (COMPARE_WITH_MOE, MOE_SELF)
    assert any("beats" in r and "unified" in r for r in d.reasons)
    assert d.numbers["plan_references"] == {"unified": 0.8214, "cluster0": 0.7265}


def test_cluster_that_beats_moe_is_main() -> None:
    d = decide(_methods(), _diffs(back=WIN))
    assert (d.branch, d.main_result) == (COMPARE_WITH_MOE, CLUSTER)


def test_no_significant_difference_takes_the_higher_mean_and_says_so() -> None:
    d = decide(_methods(), _diffs())
    assert d.main_result == MOE_SELF  # 62% > 60%
    assert any("without a difference shown to exceed the minimum effect" in r for r in d.reasons)


def test_no_significant_difference_says_whether_the_interval_or_holm_decided() -> None:
    contains_zero = decide(_methods(), _diffs())
    assert any("the 95% interval of the difference contains 0" in r for r in contains_zero.reasons)
    # The demo's case: MoE - cluster has its interval below 0, yet Holm's p is 0.07.
    below = Paired(-0.0178, -0.0342, -0.0014, False, 0.07)
    excludes_zero = decide(
        _methods(), _diffs(moe=below, back=Paired(0.0178, 0.0014, 0.0342, False, 0.07))
    )
    (reason,) = [r for r in excludes_zero.reasons if "neither beats" in r]
    assert "contains 0" not in reason
    assert "lies beyond 0, but not after Holm's correction" in reason and "Holm p=0.07" in reason
    assert any(
        r.startswith(f"{MOE_SELF} does not beat {CLUSTER} (the interval lies below 0)")
        and r.endswith("Holm p=0.07")
        for r in excludes_zero.reasons
    )


def test_cluster_that_fails_a_baseline_leaves_moe_as_main() -> None:
    d = decide(_methods(), _diffs(cluster_ok=False))
    assert (d.branch, d.main_result) == (MOE_MAIN, MOE_SELF)
    assert any("abandoned" in r for r in d.reasons)


def test_a_degenerate_method_cannot_win() -> None:
    degenerate_moe = _methods(moe_self=Standing(0.90, degenerate=True))
    # MoE flagged as beating the cluster, but it repeats one reply: the cluster stays.
    d = decide(degenerate_moe, _diffs(moe=WIN))
    assert d.main_result == CLUSTER
    # In the MoE branch, a degenerate MoE is no main result at all.
    d = decide(degenerate_moe, _diffs(cluster_ok=False))
    assert (d.branch, d.main_result) == (MOE_MAIN, None)
    # A degenerate cluster does not pass step 1 even with intervals above 0.
    d = decide(_methods(cluster_promoted=Standing(0.95, degenerate=True)), _diffs(moe=LOSE))
    assert d.branch == MOE_MAIN


def test_target_range_is_reported_not_required() -> None:
    d = decide(_methods(cluster_promoted=Standing(0.86)), _diffs(back=WIN))
    assert any("range 85.00%-87.00%: reached" in r for r in d.reasons)
    d = decide(_methods(), _diffs(back=WIN))
    assert any(": not reached" in r for r in d.reasons) and d.main_result == CLUSTER


def test_missing_methods_make_the_decision_incomplete() -> None:
    methods = _methods()
    del methods[UNIFIED]
    d = decide(methods, _diffs())
    assert (d.branch, d.main_result) == (INCOMPLETE, None)
    assert UNIFIED in d.reasons[0]
    no_moe = _methods()
    del no_moe[MOE_SELF]
    assert decide(no_moe, _diffs(cluster_ok=False)).main_result is None
    assert decide(no_moe, _diffs()).main_result == CLUSTER


def test_a_main_result_that_does_not_beat_the_base_model_is_none() -> None:
    # The demo's case: MoE is the rule's main result at 50.79%, the bare base model 50.82%.
    methods = _methods(moe_self=Standing(0.5079), base_model=Standing(0.5082))
    tie = Paired(-0.0003, -0.01, 0.009, False, 1.0, 0.95)
    d = decide(methods, _diffs(cluster_ok=False, cluster_base=tie, moe_base=tie))
    assert (d.branch, d.main_result) == (BASE_NOT_BEATEN, None)
    assert "no method beats the base_model: base_model 50.82%" in d.reasons[-1]
    assert "moe_self 50.79%" in d.reasons[-1]
    assert any(
        r.startswith(f"{MOE_SELF} does not beat {BASE} (the interval contains 0): -0.03 pt")
        for r in d.reasons
    )
    assert d.numbers["step4"]["beaten_by"] == []
    # The cluster adapter beats the base model, but the rule abandoned it in step 1.
    d = decide(methods, _diffs(cluster_ok=False, moe_base=tie))
    assert (d.branch, d.main_result) == (BASE_NOT_BEATEN, None)
    assert "does, but the rule did not choose it" in d.reasons[-1]
    # Beating the base model confirms the rule's choice.
    d = decide(methods, _diffs(cluster_ok=False))
    assert (d.branch, d.main_result) == (MOE_MAIN, MOE_SELF)
    assert d.reasons[-1] == f"{MOE_SELF} beats the {BASE}: it is the main result"


def test_a_main_result_needs_the_base_model_evaluated() -> None:
    methods = _methods()
    del methods[BASE]
    d = decide(methods, _diffs(back=WIN))
    assert (d.branch, d.main_result) == (INCOMPLETE, None)
    assert f"step 4 needs the {BASE}" in d.reasons[-1]


def test_a_verdict_on_a_degenerate_comparator_says_so() -> None:
    methods = _methods(unified_adapter=Standing(0.3, degenerate=True))
    d = decide(methods, _diffs(back=WIN))
    assert d.main_result == CLUSTER
    assert any(
        r.startswith(f"the {UNIFIED} is degenerate") and f"only that {CLUSTER} is not broken" in r
        for r in d.reasons
    )
    d = decide(_methods(base_model=Standing(0.3, degenerate=True)), _diffs(back=WIN))
    assert any(
        r.startswith(f"the {BASE} is degenerate") and f"only that {CLUSTER} and {MOE_SELF}" in r
        for r in d.reasons
    )


def test_caveats_say_only_what_is_true() -> None:
    """The real-data run's contradiction: "beating it shows only that the cluster is not
    broken" about a comparison the cluster lost, beside "the cluster is degenerate: it cannot
    win". The caveat stands only beside a win, never beside a loss or a degenerate loser."""
    degenerate_cluster0 = Standing(0.10, degenerate=True)
    lost = Paired(-0.02, -0.03, -0.01, False, 0.001, 0.001)
    # the promoted trial is degenerate and loses to the degenerate cluster-0 adapter
    d = decide(
        _methods(
            cluster_promoted=Standing(0.09, degenerate=True), cluster0_adapter=degenerate_cluster0
        ),
        {**_diffs(cluster_ok=False), f"{CLUSTER} - {CLUSTER0}": lost},
    )
    assert any(
        f"{CLUSTER} is degenerate (one reply repeated): it cannot win" in r for r in d.reasons
    )
    assert not any("not broken" in r for r in d.reasons), d.reasons
    # a loss to a degenerate baseline: no caveat either
    d = decide(
        _methods(cluster0_adapter=degenerate_cluster0),
        {**_diffs(), f"{CLUSTER} - {CLUSTER0}": lost},
    )
    assert not any("not broken" in r for r in d.reasons), d.reasons
    # a degenerate base model that nobody beats: no caveat
    tie = Paired(0.0, -0.01, 0.01, False, 1.0, 1.0)
    d = decide(
        _methods(base_model=Standing(0.6, degenerate=True)),
        _diffs(back=WIN, cluster_base=tie, moe_base=tie),
    )
    assert d.branch == BASE_NOT_BEATEN
    assert not any("not broken" in r for r in d.reasons), d.reasons


def test_an_interval_above_zero_never_stands_beside_does_not_beat_without_the_reason() -> None:
    # The case: +1.76 pt, 95% CI +0.15 to +3.32, yet Holm p=0.258.
    above = Paired(0.0176, 0.0015, 0.0332, False, 0.258, 0.032)
    d = decide(_methods(), {**_diffs(), f"{CLUSTER} - {CLUSTER0}": above})
    (text,) = [r for r in d.reasons if r.startswith(f"{CLUSTER} does not beat {CLUSTER0}")]
    assert "(the interval lies above 0, but Holm p >= 0.05)" in text
    assert text.endswith("95% CI (unadjusted) [+0.15, +3.32], p=0.032 (one-sided), Holm p=0.258")
    # with the minimum effect of 2 points, the interval is not above it: that is the reason
    at_two = Paired(0.0176, 0.0015, 0.0332, False, 0.7, 0.62, margin=0.02)
    d = decide(_methods(), {**_diffs(), f"{CLUSTER} - {CLUSTER0}": at_two})
    (text,) = [r for r in d.reasons if r.startswith(f"{CLUSTER} does not beat {CLUSTER0}")]
    assert text.startswith(
        f"{CLUSTER} does not beat {CLUSTER0} by more than the minimum effect of 2.0 points "
        "(the interval lies above 0 but not above the minimum effect of 2.0 points): +1.76 pt"
    )


# --- the minimum effect -----------------------------------------------------------------

WIN_BY_3 = Paired(0.031, 0.024, 0.038, True, 0.01, 0.002, margin=0.02)
"""+3.1 pt, 95% CI [+2.4, +3.8], Holm p 0.01, tested against the minimum effect of 2 points."""
NEARLY_BASE = Paired(0.0022, 0.0008, 0.0036, False, 1.0, 1.0, margin=0.02)
"""The issue's MoE with self: +0.22 pt over the base model, tiny variance, Holm p 0.043 without
a margin; at 2 points its one-sided p is 1."""
TIE_2 = Paired(0.0, -0.01, 0.01, False, 1.0, 1.0, margin=0.02)


def test_a_tiny_difference_is_no_main_result_and_the_text_states_the_margin() -> None:
    """The issue's case: the cluster adapter abandoned at step 1, MoE with self +0.22 pt
    over the base model with tiny variance. At the minimum effect of 2 points MoE does not
    beat the base model: no main result, and every line says by how much it had to."""
    methods = _methods(moe_self=Standing(0.5061), base_model=Standing(0.5039))
    diffs = {
        **{k: TIE_2 for k in _diffs()},
        f"{MOE_SELF} - {BASE}": NEARLY_BASE,
    }
    d = decide(methods, diffs, labels={MOE_SELF: "MoE merge, with self", BASE: "base model"})
    assert (d.branch, d.main_result) == (BASE_NOT_BEATEN, None)
    assert any(
        r.startswith(
            "MoE merge, with self does not beat base model by more than the minimum effect of "
            "2.0 points (the interval lies above 0 but not above the minimum effect of 2.0 "
            "points): +0.22 pt, 95% CI (unadjusted) [+0.08, +0.36]"
        )
        for r in d.reasons
    ), d.reasons
    assert d.reasons[-1].startswith(
        "no method beats the base model by more than the minimum effect of 2.0 points"
    )
    assert any(
        "step 3" in r and "by more than the minimum effect of 2.0 points" in r for r in d.reasons
    )


def test_a_difference_above_the_margin_is_the_main_result_and_the_text_says_so() -> None:
    diffs = {k: WIN_BY_3 if v.beats else TIE_2 for k, v in _diffs(back=WIN).items()}
    d = decide(_methods(), diffs, labels={CLUSTER: "cluster 4, promoted trial", BASE: "base model"})
    assert (d.branch, d.main_result) == (COMPARE_WITH_MOE, CLUSTER)
    assert (
        "cluster 4, promoted trial beats base model by more than the minimum effect of 2.0 "
        "points: +3.10 pt, 95% CI (unadjusted) [+2.40, +3.80], p=0.002 (one-sided), Holm p=0.01"
    ) in d.reasons
    assert d.reasons[-1] == (
        "cluster 4, promoted trial beats the base model by more than the minimum effect of 2.0 "
        "points: it is the main result"
    )


def test_step_lines_use_the_labels_the_tables_use() -> None:
    """With the report's labels, no line of the decision names an internal id."""
    from evaluators.report.rows import label

    labels = {n: label(n, 4) for n in (CLUSTER, UNIFIED, CLUSTER0, MOE_SELF, BASE)}
    for diffs in (_diffs(moe=WIN), _diffs(back=WIN), _diffs(cluster_ok=False), _diffs()):
        d = decide(_methods(unified_adapter=Standing(0.3, degenerate=True)), diffs, labels=labels)
        text = "\n".join(d.reasons)
        for internal in (CLUSTER, UNIFIED, CLUSTER0, MOE_SELF, BASE):
            assert internal not in text, (internal, text)
        assert "cluster 4, promoted trial" in text


def test_the_family_is_the_rule_s_own_comparisons() -> None:
    every = [
        "base_model",
        UNIFIED,
        CLUSTER0,
        CLUSTER,
        "trial_5",
        MOE_SELF,
        "moe_cold_start",
        "persona_adapters",
        "copy_persona",
        "reference_ceiling",
        "persona_swapped",
    ]
    assert rule_comparisons(every) == [
        (CLUSTER, UNIFIED),
        (CLUSTER, CLUSTER0),
        (MOE_SELF, CLUSTER),
        (CLUSTER, MOE_SELF),
        (CLUSTER, BASE),
        (MOE_SELF, BASE),
    ]
    assert rule_comparisons([CLUSTER, UNIFIED, "copy_persona"]) == [(CLUSTER, UNIFIED)]


def test_target_range_must_increase() -> None:
    with pytest.raises(ValueError, match="target_range"):
        decide(_methods(), _diffs(), target_range=(0.9, 0.8))


# --- the report on real storage ---------------------------------------------------------

CONFIG = EvalConfig(max_new_tokens=8)


@pytest.fixture
def stored(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Any, int, list[Any]]]:
    path = write_small_dataset(tmp_path / "small.jsonl", n_personas=10, examples=8)
    dataset = load_dataset(path, split=SplitConfig(n_test=3)).dataset
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


def _store(
    engine: Any,
    dataset_id: int,
    personas: list[Any],
    method: str,
    replies: Any,
    trial: int = -1,
    cluster: int = 4,
) -> None:
    items = eval_items(personas, "test")
    key = RunKey("study", method, dataset_id, None, cluster, trial_number=trial, eval_config=CONFIG)
    score_replies(engine, key, items, [replies(it) for it in items])


def test_report_reads_stored_runs_lists_missing_and_renders(
    stored: tuple[Any, int, list[Any]], tmp_path: Path
) -> None:
    engine, dataset_id, all_personas = stored
    personas = all_personas[:6]
    texts = {p.key: p.text for p in personas}
    # unified: the reference itself (strong); cluster 0: one fixed sentence (degenerate);
    # the promoted trial 2: the persona text; trial 5: other persona's text.
    _store(engine, dataset_id, personas, "unified_adapter.abc", lambda it: it.reference)
    _store(engine, dataset_id, personas, "cluster0_adapter.abc", lambda it: "I like it.")
    _store(engine, dataset_id, personas, TRIAL_METHOD, lambda it: texts[it.persona_key], trial=2)
    _store(engine, dataset_id, personas, TRIAL_METHOD, lambda it: "Hello there friend.", trial=5)
    _store(engine, dataset_id, personas, "base_model.abc", lambda it: "Tell me more.")
    # A run that misses examples (one persona only) is not used.
    _store(engine, dataset_id, personas[:1], "moe_self.abc", lambda it: it.reference)

    scope = report.ReportScope("study", 4, personas, CONFIG)
    results = report.collect_results(engine, scope, promoted_trial=2)
    assert list(results) == [BASE, UNIFIED, CLUSTER0, CLUSTER, "trial_5"]
    assert results[CLUSTER0].diversity.degenerate
    history = [
        report.TrialPoint(0, "COMPLETE", 0.9, {1: 1.2, 2: 0.9}),
        report.TrialPoint(1, "PRUNED", None, {1: 1.5}),
        report.TrialPoint(2, "COMPLETE", 0.8, {1: 1.0, 2: 0.8}),
    ]
    built = report.build_report(
        "study",
        results,
        cluster_id=4,
        history=history,
        promoted_trial=2,
        evaluated_trials=[2, 5],
        extra={"n_personas": 6},
    )
    assert "MoE merge, with self" in built["not_evaluated"]
    assert "copy the persona" in built["not_evaluated"]
    assert built["tested_family"] == "decision_comparisons"
    assert list(built["decision_comparisons"]) == [
        f"{CLUSTER} - {UNIFIED}",
        f"{CLUSTER} - {CLUSTER0}",
        f"{CLUSTER} - {BASE}",
    ]
    assert "comparisons" not in built and "holm_family" not in built  # one family, named
    assert built["family_note"].startswith("Holm's correction runs over these 3 comparisons")
    p_holm = [c["p_holm"] for c in built["decision_comparisons"].values()]
    assert all(p is not None for p in p_holm)
    # The persona text does not beat the references themselves: MoE is the main result,
    # and it is not evaluated, so there is none yet.
    assert built["decision"]["branch"] == decision.MOE_MAIN
    assert built["decision"]["main_result"] is None
    assert built["rows"][UNIFIED]["vs_base_model"]["mean"] > 0
    assert built["rows"][UNIFIED]["vs_base_model"]["tested"] is False
    assert "beats" not in built["rows"][UNIFIED]["vs_base_model"]
    title = report.comparison_figure(built).layout.title.text
    assert decision.MOE_MAIN not in title
    assert "Cluster 4 does not beat both the unified and cluster-0 adapters" in title

    layout = storage.OutputLayout(tmp_path / "out")
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.skip("no Chromium for kaleido: the PNG cannot be rendered here")
    files = report.write_report_files(layout, built)
    assert set(files) == {"html", "png", "json", "summary"}
    assert files["png"].parent == tmp_path / "out" / "results" / "study" / "comparison"
    png = files["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == report.FIGURE_SIZE
    assert len(png) > 50_000  # bars, points and text, not a blank canvas
    html = files["html"].read_text()
    assert "cluster 4, promoted trial" in html and "eval_loss" in html
    summary = files["summary"].read_text()
    assert "cluster_fails_moe_is_main" in summary
    assert "the family of Holm's correction: these 3 and nothing else" in summary
    assert "vs base model (pt, 95% CI unadjusted, not tested)" in summary
    assert "| MoE merge, with self | not evaluated |" in summary
    assert "(degenerate)" in summary
    saved = json.loads(files["json"].read_text())
    assert saved["decision"] == built["decision"]


def _store_all(
    engine: Any,
    dataset_id: int,
    personas: list[Any],
    methods: dict[str, Any],
    cluster: int = 4,
) -> None:
    for method, replies in methods.items():
        if method == CLUSTER:
            _store(engine, dataset_id, personas, TRIAL_METHOD, replies, trial=2, cluster=cluster)
        else:
            _store(engine, dataset_id, personas, f"{method}.abc", replies, cluster=cluster)


def _store_yardsticks(
    engine: Any, dataset_id: int, personas: list[Any], texts: Any, far: Any
) -> None:
    """Stored replies of the three yardsticks: the persona's text, the reference with a word
    more, and a far persona's text."""
    _store_all(
        engine,
        dataset_id,
        personas,
        {
            "copy_persona": lambda it: texts[it.persona_key],
            "reference_ceiling": lambda it: f"{it.reference} Yes.",
            "persona_swapped": lambda it: far[it.persona_key],
        },
    )


def test_adding_a_yardstick_never_changes_the_decision(
    stored: tuple[Any, int, list[Any]],
) -> None:
    engine, dataset_id, personas = stored  # 10 personas: p-values small enough to beat
    texts = {p.key: p.text for p in personas}
    keys = sorted(texts)
    far = {k: texts[keys[(i + 5) % len(keys)]] for i, k in enumerate(keys)}
    _store_all(
        engine,
        dataset_id,
        personas,
        {
            BASE: lambda it: texts[it.persona_key],
            UNIFIED: lambda it: far[it.persona_key],
            CLUSTER0: lambda it: "I like it.",
            CLUSTER: lambda it: it.reference,
            MOE_SELF: lambda it: it.reference,
        },
    )
    scope = report.ReportScope("study", 4, personas, CONFIG)
    before = report.build_report(
        "study",
        report.collect_results(engine, scope, promoted_trial=2),
        cluster_id=4,
        promoted_trial=2,
    )
    assert (before["decision"]["branch"], before["decision"]["main_result"]) == (
        COMPARE_WITH_MOE,
        CLUSTER,
    )
    assert any(
        r.startswith("the cluster 0 adapter is degenerate") and "cluster 4, promoted trial" in r
        for r in before["decision"]["reasons"]
    )
    _store_yardsticks(engine, dataset_id, personas, texts, far)
    results = report.collect_results(engine, scope, promoted_trial=2)
    assert {"copy_persona", "reference_ceiling", "persona_swapped"} <= set(results)
    after = report.build_report("study", results, cluster_id=4, promoted_trial=2)
    assert after["decision"] == before["decision"]
    assert after["decision_comparisons"] == before["decision_comparisons"]
    assert (
        list(after["decision_comparisons"])
        == list(before["decision_comparisons"])
        == [
            f"{CLUSTER} - {UNIFIED}",
            f"{CLUSTER} - {CLUSTER0}",
            f"{MOE_SELF} - {CLUSTER}",
            f"{CLUSTER} - {MOE_SELF}",
            f"{CLUSTER} - {BASE}",
            f"{MOE_SELF} - {BASE}",
        ]
    )
    # The yardsticks are described against the base model, not tested.
    assert after["described"]["reference_ceiling - base_model"]["p_holm"] is None
    _check_the_figure_shows_the_test(after)
    row = after["rows"]["reference_ceiling"]
    assert row["label"] == "reference agreement (two references of the same persona)"


def _check_the_figure_shows_the_test(built: dict[str, Any]) -> None:
    """Beside the bars, a forest plot of the decision's family: each paired difference with
    its 95% CI, in a trace of its verdict; zero and the minimum effect as vertical lines; the
    base model's score drawn across the bars as step 4's bar."""
    fig = report.comparison_figure(built)
    family = built["decision_comparisons"]
    forest = {t.name: t for t in fig.data if "paired difference" in (t.name or "")}
    assert set(forest) == {
        "beats (paired difference, 95% CI)",
        "does not beat (paired difference, 95% CI)",
    }
    drawn = {
        (y.replace("<br>", ""), x) for t in forest.values() for y, x in zip(t.y, t.x, strict=True)
    }
    assert len(drawn) == len(family) == 6
    for name, c in family.items():
        a, _, b = name.partition(" - ")
        y = f"{report.label(a, 4)} −{report.label(b, 4)}"
        assert (y, c["mean_percent_points"]) in drawn
        trace = forest[
            ("beats" if c["beats"] else "does not beat") + " (paired difference, 95% CI)"
        ]
        i = [t.replace("<br>", "") for t in trace.y].index(y)
        low, high = c["ci_percent_points"]
        assert trace.error_x.array[i] == pytest.approx(high - c["mean_percent_points"])
        assert trace.error_x.arrayminus[i] == pytest.approx(c["mean_percent_points"] - low)
    assert {t.xaxis for t in forest.values()} == {"x2"}  # beside the bars (x), not on them
    lines = {s.x0 for s in fig.layout.shapes if s.type == "line" and s.xref == "x2"}
    assert lines == {0, built["min_effect_percent_points"]} == {0, 2.0}
    (base,) = [t for t in fig.data if (t.name or "").endswith("step 4's bar")]
    assert base.name.startswith("base model") and base.xaxis == "x"
    assert list(base.y) == pytest.approx(
        [100 * built["rows"][BASE]["mean_similarity"]] * len(base.y)
    )
    assert len(base.x) == len(built["rows"])  # across every bar


def test_promotion_tests_the_rule_s_family_and_describes_the_yardsticks(
    stored: tuple[Any, int, list[Any]],
) -> None:
    """cluster_lora_results.json holds the same family as the report (the trial against the
    unified adapter, cluster 0 and the base model, Holm among those three), with the same
    Holm p-values; the yardsticks are described, and adding them changes nothing tested."""
    engine, dataset_id, personas = stored
    texts = {p.key: p.text for p in personas}
    keys = sorted(texts)
    far = {k: texts[keys[(i + 5) % len(keys)]] for i, k in enumerate(keys)}
    rule = {
        BASE: lambda it: texts[it.persona_key],
        UNIFIED: lambda it: far[it.persona_key],
        CLUSTER0: lambda it: f"{texts[it.persona_key]} {it.reference}",
        CLUSTER: lambda it: it.reference,
    }
    _store_all(engine, dataset_id, personas, rule)
    scope = report.ReportScope("study", 4, personas, CONFIG)

    def as_promotion(results: dict[str, Any]) -> dict[str, Any]:
        return {TRIAL_METHOD if k == CLUSTER else k: v for k, v in results.items()}

    results = report.collect_results(engine, scope, promoted_trial=2)
    before_tested, before_described = rule_family(as_promotion(results), TRIAL_METHOD)
    family = [f"{TRIAL_METHOD} - {b}" for b in (UNIFIED, CLUSTER0, BASE)]
    assert list(before_tested) == family and before_described == {}
    built = report.build_report("study", results, cluster_id=4, promoted_trial=2)
    for name, tested in before_tested.items():
        same = built["decision_comparisons"][name.replace(TRIAL_METHOD, CLUSTER)]
        assert tested.difference.p_holm == pytest.approx(same["p_holm"])

    _store_yardsticks(engine, dataset_id, personas, texts, far)
    results = report.collect_results(engine, scope, promoted_trial=2)
    tested, described = rule_family(as_promotion(results), TRIAL_METHOD)
    assert tested == before_tested
    assert set(described) == {
        f"{TRIAL_METHOD} - {y}" for y in ("copy_persona", "reference_ceiling", "persona_swapped")
    }
    assert all(d.p_holm is None for d in described.values())


def test_the_report_says_no_method_beats_the_base_model(
    stored: tuple[Any, int, list[Any]], tmp_path: Path
) -> None:
    engine, dataset_id, personas = stored
    texts = {p.key: p.text for p in personas}
    _store_all(
        engine,
        dataset_id,
        personas,
        {
            BASE: lambda it: it.reference,
            UNIFIED: lambda it: "I like it.",
            CLUSTER0: lambda it: "Hello there friend.",
            CLUSTER: lambda it: texts[it.persona_key],
            MOE_SELF: lambda it: texts[it.persona_key] + " Yes.",
        },
    )
    scope = report.ReportScope("study", 4, personas, CONFIG)
    built = report.build_report(
        "study",
        report.collect_results(engine, scope, promoted_trial=2),
        cluster_id=4,
        promoted_trial=2,
    )
    d = built["decision"]
    assert (d["branch"], d["main_result"]) == (BASE_NOT_BEATEN, None)
    base = 100 * built["rows"][BASE]["mean_similarity"]
    assert d["reasons"][-1].startswith(
        "no method beats the base model by more than the minimum effect of 2.0 points: "
        f"base model {base:.2f}%, cluster 4, promoted trial"
    )
    files = report.write_report_files(storage.OutputLayout(tmp_path / "out"), built, png=False)
    summary = files["summary"].read_text()
    assert (
        f"**Decision:** No method beats the base model ({base:.2f}%) by more than the minimum "
        "effect of 2.0 points; no main result."
    ) in summary
    assert "does not beat: the interval lies below 0" in summary


def test_a_study_of_cluster_0_cannot_compare_with_cluster_0() -> None:
    methods = _methods()
    del methods[CLUSTER0]
    diffs = _diffs(back=WIN)
    del diffs[f"{CLUSTER} - {CLUSTER0}"]
    assert decide(methods, diffs).branch == INCOMPLETE  # the plan's rule, as if cluster 4
    d = decide(methods, diffs, tuned_cluster=0)
    assert (d.branch, d.main_result) == (COMPARE_WITH_MOE, CLUSTER)
    assert not any("needs" in r for r in d.reasons)
    (reason,) = [r for r in d.reasons if r.startswith(f"{CLUSTER} − {CLUSTER0}")]
    assert "cluster 0 itself" in reason and "cannot be compared with itself" in reason
    assert d.numbers["step1"][f"{CLUSTER} - {CLUSTER0}"] == decision.SELF_CLUSTER0
    assert any(f"beats the {UNIFIED}: compare it with {MOE_SELF}" in r for r in d.reasons)
    # Failing the unified adapter alone abandons cluster training.
    d = decide(methods, _diffs(cluster_ok=False), tuned_cluster=0)
    assert d.branch == MOE_MAIN
    assert rule_comparisons([CLUSTER, UNIFIED, CLUSTER0], tuned_cluster=0) == [(CLUSTER, UNIFIED)]


def test_the_report_names_the_study_s_cluster_and_handles_cluster_0(
    stored: tuple[Any, int, list[Any]], tmp_path: Path
) -> None:
    """A study that tunes cluster 0: its rows are labelled cluster 0 (never cluster 4), the
    cluster-0 adapter is neither tested nor listed as missing, and the decision says why."""
    engine, dataset_id, personas = stored
    texts = {p.key: p.text for p in personas}
    keys = sorted(texts)
    far = {k: texts[keys[(i + 5) % len(keys)]] for i, k in enumerate(keys)}
    _store_all(
        engine,
        dataset_id,
        personas,
        {
            BASE: lambda it: texts[it.persona_key],
            UNIFIED: lambda it: far[it.persona_key],
            CLUSTER: lambda it: it.reference,
            MOE_SELF: lambda it: f"{texts[it.persona_key]} {it.reference}",
        },
        cluster=0,
    )
    _store(engine, dataset_id, personas, TRIAL_METHOD, lambda it: it.reference, trial=3, cluster=0)
    scope = report.ReportScope("study", 0, personas, CONFIG)
    results = report.collect_results(engine, scope, promoted_trial=2)
    built = report.build_report(
        "study", results, cluster_id=0, promoted_trial=2, evaluated_trials=[2, 3]
    )
    d = built["decision"]
    assert (d["branch"], d["main_result"]) == (COMPARE_WITH_MOE, CLUSTER)
    assert any("cluster 0 itself" in r for r in d["reasons"])
    assert not any("needs" in r for r in d["reasons"])
    assert list(built["decision_comparisons"]) == [
        f"{CLUSTER} - {UNIFIED}",
        f"{MOE_SELF} - {CLUSTER}",
        f"{CLUSTER} - {MOE_SELF}",
        f"{CLUSTER} - {BASE}",
        f"{MOE_SELF} - {BASE}",
    ]
    assert "cluster 0 adapter" not in built["not_evaluated"]
    assert built["rows"][CLUSTER]["label"] == "cluster 0, promoted trial"
    assert built["rows"]["trial_3"]["label"] == "cluster 0, trial 3"
    title = report.comparison_figure(built).layout.title.text
    assert "Cluster 0 beats the unified adapter (no cluster-0 comparison" in title
    files = report.write_report_files(storage.OutputLayout(tmp_path / "out"), built, png=False)
    text = files["summary"].read_text() + files["html"].read_text()
    assert "cluster 4" not in text.lower()
    assert "| cluster 0, promoted trial − unified adapter |" in text


def test_a_degenerate_difference_that_also_fails_holm_gives_both_reasons() -> None:
    above = Paired(0.7438, 0.6196, 0.8679, False, 0.25, 0.125)
    d = decide(
        _methods(cluster_promoted=Standing(1.0, degenerate=True)),
        {**_diffs(), f"{CLUSTER} - {UNIFIED}": above},
    )
    (text,) = [r for r in d.reasons if r.startswith(f"{CLUSTER} does not beat {UNIFIED}")]
    assert text.startswith(
        f"{CLUSTER} does not beat {UNIFIED} (the interval lies above 0, but Holm p >= 0.05, "
        "and it is degenerate: one reply repeated): +74.38 pt"
    )
