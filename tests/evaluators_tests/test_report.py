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
    CLUSTER,
    COMPARE_WITH_MOE,
    INCOMPLETE,
    MOE_MAIN,
    MOE_SELF,
    Paired,
    Standing,
    decide,
)
from evaluators.scoring.method_run import RunKey, eval_items, score_replies
from evaluators.trials.promotion import TRIAL_METHOD
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
    }
    methods.update({k.replace("__", " "): v for k, v in overrides.items()})
    return methods


def _diffs(cluster_ok: bool = True, moe: Paired = LOSE, back: Paired = LOSE) -> dict[str, Paired]:
    return {
        f"{CLUSTER} - {UNIFIED}": WIN if cluster_ok else LOSE,
        f"{CLUSTER} - {CLUSTER0}": WIN,
        f"{MOE_SELF} - {CLUSTER}": moe,
        f"{CLUSTER} - {MOE_SELF}": back,
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
    assert "without a significant difference" in d.reasons[-1]


def test_no_significant_difference_says_whether_the_interval_or_holm_decided() -> None:
    contains_zero = decide(_methods(), _diffs())
    assert "the 95% interval of the difference contains 0" in contains_zero.reasons[-1]
    # The demo's case: MoE - cluster has its interval below 0, yet Holm's p is 0.07.
    below = Paired(-0.0178, -0.0342, -0.0014, False, 0.07)
    excludes_zero = decide(
        _methods(), _diffs(moe=below, back=Paired(0.0178, 0.0014, 0.0342, False, 0.07))
    )
    reason = excludes_zero.reasons[-1]
    assert "contains 0" not in reason
    assert "excludes 0, but not after Holm's correction" in reason and "Holm p=0.07" in reason
    assert any("Holm p=0.07 (does not beat)" in r for r in excludes_zero.reasons)


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
    d = decide(_methods(cluster4_promoted=Standing(0.95, degenerate=True)), _diffs(moe=LOSE))
    assert d.branch == MOE_MAIN


def test_target_range_is_reported_not_required() -> None:
    d = decide(_methods(cluster4_promoted=Standing(0.86)), _diffs(back=WIN))
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
    engine: Any, dataset_id: int, personas: list[Any], method: str, replies: Any, trial: int = -1
) -> None:
    items = eval_items(personas, "test")
    key = RunKey("study", method, dataset_id, None, 4, trial_number=trial, eval_config=CONFIG)
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
    # A run that misses examples (one persona only) is not used.
    _store(engine, dataset_id, personas[:1], "moe_self.abc", lambda it: it.reference)

    scope = report.ReportScope("study", 4, personas, CONFIG)
    results = report.collect_results(engine, scope, promoted_trial=2)
    assert list(results) == [UNIFIED, CLUSTER0, CLUSTER, "trial_5"]
    assert results[CLUSTER0].diversity.degenerate
    history = [
        report.TrialPoint(0, "COMPLETE", 0.9, {1: 1.2, 2: 0.9}),
        report.TrialPoint(1, "PRUNED", None, {1: 1.5}),
        report.TrialPoint(2, "COMPLETE", 0.8, {1: 1.0, 2: 0.8}),
    ]
    built = report.build_report(
        "study",
        results,
        history=history,
        promoted_trial=2,
        evaluated_trials=[2, 5],
        extra={"n_personas": 6},
    )
    assert "MoE merge, with self" in built["not_evaluated"]
    assert "base model" in built["not_evaluated"]
    assert f"{CLUSTER} - {UNIFIED}" in built["comparisons"]
    assert f"{CLUSTER} - {CLUSTER0}" in built["comparisons"]
    p_holm = [c["p_holm"] for c in built["comparisons"].values()]
    assert all(p is not None for p in p_holm)
    # The persona text does not beat the references themselves: MoE is the main result,
    # and it is not evaluated, so there is none yet.
    assert built["decision"]["branch"] == decision.MOE_MAIN
    assert built["decision"]["main_result"] is None
    assert built["rows"][CLUSTER]["vs_unified"]["mean"] < 0

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
    assert "| MoE merge, with self | not evaluated |" in summary
    assert "(degenerate)" in summary
    saved = json.loads(files["json"].read_text())
    assert saved["decision"] == built["decision"]
