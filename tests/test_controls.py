"""The controls: a planted effect the verdict must find, and a negative control in which it may
find none. The demo's own flow at a small scale (:func:`hpo.demo.run_demo` in one process), with
the real tiny model, real peft adapters, real sentence embeddings and a real Optuna study on
SQLite. Their error rates over many seeds: benchmarks/bench_controls.py (BENCHMARKS.md)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from evaluators.config import EvalConfig
from evaluators.report.decision import CLUSTER, CLUSTER0, UNIFIED
from hpo.demo import DemoOptions, DemoShortcuts, run_demo
from hpo.study.config import packaged_config

SMALL = dict(personas=40, examples=40, n_trials=1, plant_strength=0.8)
"""14 personas in the tuned cluster (of 40), 10 test examples each, one trial. Strength 0.8:
with fewer personas, or at 30 personas, the adapter that learned the topic repeats one reply in
more than 10% of its answers and is degenerate (measured); the negative control ignores it."""
QUICK = DemoShortcuts(
    in_process=True, eval_config=EvalConfig(max_new_tokens=24), top_k=1, moe=False, png=False
)
"""The study's trial in this process; no MoE (its branch is measured by the benchmark)."""


def _run(tmp_path: Path, *, negative: bool) -> tuple[dict[str, object], str]:
    printed = io.StringIO()
    options = DemoOptions(
        output_root=tmp_path, config=packaged_config("controls"), negative_control=negative, **SMALL
    )
    result = run_demo(options, Console(file=printed, width=400), QUICK)
    return result.decision, printed.getvalue()


@pytest.mark.slow
@pytest.mark.timeout(300, func_only=True)
def test_a_planted_effect_is_found(tmp_path: Path) -> None:
    decision, printed = _run(tmp_path, negative=False)
    assert "planted: 80% of the fitness personas' replies" in printed
    # every persona of the tuned cluster shares the planted trait, and only they do
    assert "cluster 4 (tuned): 14 personas, 14 of them of the 14 fitness personas" in printed
    numbers = decision["numbers"]
    assert isinstance(numbers, dict)
    for baseline in (UNIFIED, CLUSTER0):
        assert numbers["step1"][f"{CLUSTER} - {baseline}"]["beats"], "\n".join(decision["reasons"])
    assert numbers["step4"][f"{CLUSTER} - base_model"]["beats"], "\n".join(decision["reasons"])
    assert decision["main_result"] == CLUSTER, "\n".join(decision["reasons"])
    assert "the decision names cluster 4, promoted trial as the main result: found" in printed


@pytest.mark.slow
@pytest.mark.timeout(300, func_only=True)
def test_the_negative_control_names_no_main_result(tmp_path: Path) -> None:
    decision, printed = _run(tmp_path, negative=True)
    assert "planted: none (negative control)" in printed
    assert decision["main_result"] is None, "\n".join(decision["reasons"])
    assert "negative control (nothing planted): the decision names no main result" in printed
    assert (tmp_path / "data" / "demo-negative_personas.jsonl").is_file()
