"""The CLI's tables: no cell is ever cut, piped or at 80 columns, and ``hpo evaluate --trial N``
shows trial N's row under its own number."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from evaluators.trials.scope import TRIAL_METHOD
from hpo.cli.display import (
    PROMOTED_METHOD,
    method_rows,
    plain_table,
    print_table,
    study_list_table,
    trials_table,
)
from hpo.study.queries import StudyListRow, TrialRow


def _render(table: object, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=False).print(table)
    return out.getvalue()


def test_tables_at_80_columns_cut_no_name_and_no_number() -> None:
    names = ["cluster4-lora-learning-rate-search-2024", "cluster0_baseline_with_long_name"]
    rows = [
        StudyListRow(n, 20, {"COMPLETE": 12, "PRUNED": 7, "FAIL": 1}, 3, 0.295312) for n in names
    ]
    shown = _render(study_list_table(rows, "studies in sqlite:///demo_run/hpo.db"))
    assert "…" not in shown
    assert "0.2953 (#3)" in shown
    lines = [line.strip() for line in shown.splitlines()]
    body = lines[next(i for i, line in enumerate(lines) if line.startswith("─")) + 1 :]
    first_column = "".join(line.split()[0] for line in body[: body.index("")])
    assert all(n in first_column for n in names)  # folded onto lines, never cut
    narrow = _render(study_list_table(rows, "studies"), width=40)
    assert "…" not in narrow and "(#3)" in narrow  # no column dropped or cut when narrow

    params = {"learning_rate": 0.000123456, "lora_r": 16, "lora_alpha": 32, "batch_size": 4}
    trials = [TrialRow(n, "COMPLETE", 6.19293, params, None, n == 0, "") for n in range(3)]
    shown = _render(trials_table(trials, "best 3 trials of cluster4-lora-learning-rate-search"))
    assert "…" not in shown
    assert "6.1929" in shown
    flat = "".join(shown.split())
    assert "learning_rate=0.000123" in flat and "lora_r=16" in flat


def _trial(number: int, promoted: bool) -> SimpleNamespace:
    return SimpleNamespace(
        trial=SimpleNamespace(trial_number=number), result=f"result {number}", promoted=promoted
    )


def test_evaluate_trial_n_shows_trial_n_not_the_promoted_one_as_cluster_lora() -> None:
    assert PROMOTED_METHOD == TRIAL_METHOD
    report = SimpleNamespace(
        trials=(_trial(0, True), _trial(1, False), _trial(2, False)),
        methods={TRIAL_METHOD: "result 0", "base_model": "base"},
    )
    assert method_rows(report, 1) == {
        "trial 1": "result 1",
        "trial 0, promoted": "result 0",
        "base_model": "base",
    }
    assert method_rows(report) == {"trial 0, promoted": "result 0", "base_model": "base"}
    assert list(method_rows(report, 0)) == ["trial 0, promoted", "base_model"]
    with pytest.raises(
        ValueError, match=r"trial 7 is not evaluated; evaluated trials: \[0, 1, 2\]"
    ):
        method_rows(report, 7)
    adapter = SimpleNamespace(methods={"adapter-abc": "a", "base_model": "base"})
    assert method_rows(adapter, 1) == adapter.methods


def test_print_table_draws_at_a_terminal_and_writes_plain_rows_when_piped() -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="t", caption="first\nsecond")
    table.add_column("name")
    table.add_column("value")
    table.add_row(Text("a\tb"), "line one\nline two")
    assert plain_table(table) == "# t\nname\tvalue\na b\tline one line two\n# first\n# second\n"
    piped, terminal = io.StringIO(), io.StringIO()
    print_table(table, Console(file=piped))  # a StringIO is no terminal
    assert piped.getvalue() == plain_table(table)
    print_table(table, Console(file=terminal, force_terminal=True, width=80))
    assert "┃" in terminal.getvalue() or "│" in terminal.getvalue()
