"""``hpo report`` on a real study of cluster 0, from stored replies (nothing generated): the
trials are labelled cluster 0, never cluster 4, and the decision says that the rule's
cluster-0 comparison cannot be made against cluster 0 itself."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from evaluators.scoring.method_run import score_replies
from evaluators.trials.promotion import TRIAL_METHOD
from hpo.evaluation.records import PROMOTED_TRIAL_ATTR
from hpo.evaluation.service import open_evaluator
from tests.conftest import import_and_cluster
from tests.hpo_tests.cli_tests.conftest import Hpo


def test_report_of_a_cluster_0_study_names_cluster_0(hpo: Hpo, tmp_path: Path) -> None:
    url = import_and_cluster(f"sqlite:///{tmp_path / 'study.db'}", tmp_path, "small", k=3)
    config = tmp_path / "study.toml"
    config.write_text(
        '[study]\nname = "zero"\ndataset = "small"\nk = 3\ncluster_id = 0\nn_trials = 3\n',
        encoding="utf-8",
    )
    assert hpo("study", "create", "--config", config, "--storage", url).exit_code == 0
    evaluator = open_evaluator(url, "zero")
    engine, scope = evaluator.engine, evaluator.scope
    items = scope.items()
    texts = {p.key: p.text for p in scope.personas}
    keys = sorted(texts)
    far = {k: texts[keys[(i + 1) % len(keys)]] for i, k in enumerate(keys)}
    stored = {
        (TRIAL_METHOD, 2): lambda it: it.reference,
        ("base_model.abc", -1): lambda it: texts[it.persona_key],
        ("unified_adapter.abc", -1): lambda it: far[it.persona_key],
    }
    for (method, trial), reply in stored.items():
        key = scope.run_key(method, trial) if trial >= 0 else scope.run_key(method)
        score_replies(engine, key, items, [reply(it) for it in items])
    optuna.load_study(study_name="zero", storage=url).set_user_attr(PROMOTED_TRIAL_ATTR, 2)

    root = tmp_path / "out"
    result = hpo("report", "--study", "zero", "--no-png", "--storage", url, "--output-root", root)
    assert result.exit_code == 0, result.output
    assert "cluster 4" not in result.stdout.lower()
    assert "(no cluster-0 comparison: cluster 0 is the tuned cluster itself)" in result.stdout
    assert "cluster 0, promoted trial − cluster 0 adapter: not applicable" in result.stdout
    assert "cluster_promoted" not in result.stdout  # the tables' labels, not internal ids
    assert "main result: none" in result.stdout  # MoE is not evaluated
    assert "step 1 needs" not in result.stdout
    report = json.loads(
        (root / "results/zero/comparison/comprehensive_comparison.json").read_text()
    )
    assert report["cluster_id"] == 0
    assert report["rows"]["cluster_promoted"]["label"] == "cluster 0, promoted trial"
    assert report["decision"]["branch"] != "incomplete"
    assert "cluster 0 adapter" not in report["not_evaluated"]
    assert report["tested_family"] == "decision_comparisons"
    assert next(iter(report["decision_comparisons"])) == "cluster_promoted - unified_adapter"
    summary = (root / "results/zero/comparison/comparison_summary.md").read_text()
    assert "cluster 4" not in summary.lower() and "Cluster 0 " in summary
    # The promoted trial repeats the templated references and Holm p is 0.25 here: both said.
    assert (
        "the interval lies above the minimum effect of 2.0 points, but Holm p >= 0.05, and it "
        "is degenerate: one reply repeated"
    ) in summary
