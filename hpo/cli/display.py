"""Tables the CLI prints (rich), built from library results.

At a terminal a table is drawn by rich. Piped or redirected (``hpo study trials | grep``,
``> file``), :func:`print_table` writes it as plain rows instead: one line per row, cells
separated by tabs, each cell whole (no box drawing, no wrapping, no cut), the title and the
caption on lines of their own that start with ``# ``, so that grep, cut and awk see whole
numbers and names. ``FORCE_COLOR`` (rich's own switch) keeps the drawn table when piped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from hpo.study.queries import StudyListRow, StudyStatus, TrialRow, TrialSimilarity, study_status

if TYPE_CHECKING:
    from evaluators.trials.records import MethodsReport


def unclipped(table: Table) -> Table:
    """The table with no cell ever cut: every column wraps its cells at spaces and folds a
    word longer than the column onto the next line. Rich otherwise cuts cells with an ellipsis
    when the table is wider than the console (80 columns when piped), or drops a column."""
    for column in table.columns:
        column.no_wrap = False
        column.overflow = "fold"
        column.min_width = None  # a minimum the console cannot give crops the table
    return table


PLAIN_SEPARATOR = "\t"
"""Between the cells of a plain row: a tab, which no cell contains (see :func:`_plain_cell`)."""


def _plain_cell(cell: Any) -> str:
    """A cell's whole text on one line (a tab or line break inside it becomes a space)."""
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return " ".join(text.replace(PLAIN_SEPARATOR, " ").splitlines())


def plain_table(table: Table) -> str:
    """The table as plain lines: ``# title``, the header, one line per row with its cells
    separated by :data:`PLAIN_SEPARATOR`, then each caption line as ``# line``."""
    lines = []
    if table.title:
        lines += [f"# {line}" for line in _plain_cell(table.title).splitlines()]
    if table.show_header:
        lines.append(PLAIN_SEPARATOR.join(_plain_cell(c.header) for c in table.columns))
    columns = [list(c.cells) for c in table.columns]
    for row in zip(*columns, strict=True):
        lines.append(PLAIN_SEPARATOR.join(_plain_cell(cell) for cell in row))
    if table.caption:
        caption = table.caption.plain if isinstance(table.caption, Text) else str(table.caption)
        lines += [f"# {line}" for line in caption.splitlines()]
    return "\n".join(lines) + "\n"


def print_table(table: Table, console: Console | None = None) -> None:
    """Print a table: drawn by rich at a terminal, else as :func:`plain_table` rows."""
    console = console or Console()
    if console.is_terminal:
        console.print(table)
    else:
        console.file.write(plain_table(table))
        console.file.flush()


def cluster_table(clusters: Sequence[Any], overall: float, title: str) -> Table:
    """The cluster table the original plan began with."""
    table = Table(title=title)
    for col in ("cluster", "personas", "examples", "silhouette"):
        table.add_column(col, justify="right")
    for c in clusters:
        table.add_row(
            str(c.cluster_id), str(c.n_personas), str(c.n_examples), f"{c.silhouette:.3f}"
        )
    table.add_row(
        "all",
        str(sum(c.n_personas for c in clusters)),
        str(sum(c.n_examples for c in clusters)),
        f"{overall:.3f}",
        style="bold",
    )
    return unclipped(table)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def trials_table(
    rows: Sequence[TrialRow], title: str, promoted: TrialSimilarity | None = None
) -> Table:
    """Trials with state, eval_loss and parameters; the similarity of the evaluated ones and
    the promoted trial marked, where there are (the caption names a promoted trial that is
    not among the rows)."""
    table = Table(title=title)
    evaluated = any(r.similarity is not None for r in rows)
    columns = ("trial", "state", "eval_loss", *(("similarity",) if evaluated else ()))
    for col in (*columns, "params", "seed", "note"):
        table.add_column(col)
    for r in rows:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(r.params.items()))
        note = "; ".join(n for n in ("promoted" if r.promoted else "", r.note) if n)
        table.add_row(
            str(r.number),
            r.state,
            "" if r.value is None else f"{r.value:.4f}",
            *((_percent(r.similarity),) if evaluated else ()),
            params,
            "yes" if r.seed_config else "",
            note,
        )
    if promoted is not None and promoted.number not in {r.number for r in rows}:
        table.caption = f"promoted (best similarity, not best eval_loss): {promoted.describe()}"
    return unclipped(table)


def status_table(status: StudyStatus) -> Table:
    """Counts by state and the best trial."""
    table = Table(title=f"study {status.name}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("finished / target", f"{status.finished} / {status.n_trials_target}")
    for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"):
        table.add_row(state.lower(), str(status.counts.get(state, 0)))
    if status.best is not None:
        table.add_row("best trial (eval_loss)", str(status.best.number))
        table.add_row("best eval_loss", f"{status.best.value:.4f}")
        table.add_row(
            "best params",
            ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(status.best.params.items())),
        )
    if status.promoted is not None:
        table.add_row("promoted trial (similarity)", status.promoted.describe())
    elif status.best is not None:
        table.add_row(
            "promoted trial (similarity)",
            f"none yet: `hpo evaluator --study {status.name} --once` evaluates the top trials",
        )
    if status.decision is not None:
        table.add_row("decision", status.decision)
    return unclipped(table)


def _promoted_cell(promoted: TrialSimilarity | None) -> str:
    return "" if promoted is None else f"{_percent(promoted.similarity)} (#{promoted.number})"


def study_list_table(rows: Sequence[StudyListRow], title: str) -> Table:
    """Studies with their trial counts and their best value (eval_loss for ours)."""
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption="active: running or waiting; target: - for a study not made by hpo; "
        "promoted: the best similarity among the evaluated trials; a per-persona study is a "
        "queue of one adapter per persona (target: its personas), with no best",
    )
    table.add_column("study", no_wrap=True)
    for col in ("target", "complete", "pruned", "failed", "active"):
        table.add_column(col, justify="right", min_width=len(col))
    table.add_column("best (trial)", justify="right", no_wrap=True)
    promotions = any(r.promoted is not None for r in rows)
    if promotions:
        table.add_column("promoted (trial)", justify="right", no_wrap=True)
    for r in rows:
        if r.personas_of is not None:
            best = "per-persona"  # a queue: no best to read (the caption says so)
        else:
            best = "" if r.best_value is None else f"{r.best_value:.4f} (#{r.best_number})"
        promoted = r.promoted
        table.add_row(
            r.name,
            "-" if r.n_trials_target is None else str(r.n_trials_target),
            str(r.counts.get("COMPLETE", 0)),
            str(r.counts.get("PRUNED", 0)),
            str(r.counts.get("FAIL", 0)),
            str(r.counts.get("RUNNING", 0) + r.counts.get("WAITING", 0)),
            best,
            *(() if not promotions else (_promoted_cell(promoted),)),
        )
    return unclipped(table)


PROMOTED_METHOD = "cluster_lora"
"""The promoted trial's method name in the results file
(:data:`evaluators.trials.scope.TRIAL_METHOD`; not imported, to keep the CLI's start light)."""


def method_rows(report: MethodsReport, trial: int | None = None) -> dict[str, Any]:
    """The rows of :func:`similarity_table` by name: a study's evaluated trials by number (the
    one asked for first, the promoted one marked), then the baselines; an adapter's report as
    it is. ``cluster_lora`` names the promoted trial in the results file, never a row here."""
    trials = getattr(report, "trials", None)
    if not trials:
        return dict(report.methods)
    evaluated = sorted(t.trial.trial_number for t in trials)
    if trial is not None and trial not in evaluated:
        raise ValueError(f"trial {trial} is not evaluated; evaluated trials: {evaluated}")
    shown = sorted(
        (t for t in trials if t.promoted or t.trial.trial_number == trial),
        key=lambda t: (t.trial.trial_number != trial, t.trial.trial_number),
    )
    rows = {_trial_name(t): t.result for t in shown}
    rows.update({n: r for n, r in report.methods.items() if n != PROMOTED_METHOD})
    return rows


def _trial_name(t: Any) -> str:
    return f"trial {t.trial.trial_number}" + (", promoted" if t.promoted else "")


def similarity_table(report: MethodsReport, trial: int | None = None) -> Table:
    """Similarity of each evaluated method on the same test examples, with its floor.

    Args:
        report: The evaluation's report.
        trial: The trial asked for (``hpo evaluate --trial N``): its row comes first, under
            its number, beside the promoted trial's.
    """
    table = Table(
        title=f"embedding similarity on cluster {report.cluster_id} test examples "
        f"({report.n_test_examples} examples, {report.n_personas} personas)",
        caption=f"floor: replies vs other personas' references; normalized = "
        f"(s - floor) / (1 - floor); reference agreement (two references of the same "
        f"persona, no ceiling): "
        f"{100 * report.reference_ceiling:.2f}%",
    )
    columns = ("method", "similarity %", "95% CI", "floor %", "normalized %", "reply words")
    for col in (*columns, "distinct-2", "top reply %"):
        table.add_column(col, justify="right")
    for name, m in method_rows(report, trial).items():
        ci, diversity = m.similarity_ci, m.diversity
        table.add_row(
            name + (" (degenerate)" if diversity.degenerate else ""),
            f"{m.mean_similarity_percent:.2f}",
            "" if ci is None else f"{100 * ci.low:.2f} to {100 * ci.high:.2f}",
            f"{m.floor_percent:.2f}",
            f"{100 * m.normalized_similarity:.2f}",
            f"{diversity.mean_words:.1f}",
            f"{diversity.distinct_2:.2f}",
            f"{100 * diversity.top_reply_share:.1f}",
        )
    from evaluators.report.verdict import why_not  # pure, no heavy imports

    promoted = [t for t in getattr(report, "trials", ()) if t.promoted]
    if report.comparisons:
        # the same pair can read otherwise in another family (`hpo report`'s decision adds
        # the MoE comparisons, which raises every Holm p): the file's note says which
        note = report.FAMILY_NOTE.format(n=len(report.comparisons))
        table.caption = f"{table.caption}\nverdicts below ({report.FAMILY}): {note}"
    for name, c in report.comparisons.items():
        if promoted:
            name = name.replace(PROMOTED_METHOD, _trial_name(promoted[0]))
        low, high = c.ci_percent_points
        d = c.difference
        # where no other reason holds, why_not names the one left: a degenerate method
        why = why_not(d.low, d.high, margin=d.margin or 0.0, p_holm=d.p_holm)
        verdict = (
            f"beats by more than the minimum effect of {c.min_effect:.1f} pt"
            if c.beats
            else f"does not beat: {why}"
        )
        holm = "" if d.p_holm is None else f", Holm p={d.p_holm:.3g}"
        table.caption = (
            f"{table.caption}\n{name}: {c.mean_percent_points:+.2f} pt, 95% CI (unadjusted) "
            f"{low:+.2f} to {high:+.2f}, p={d.p_tested:.3g} (one-sided, > {c.min_effect:.1f} pt)"
            f"{holm} (paired, by persona): {verdict}"
        )
    for name, d in getattr(report, "described", {}).items():
        if promoted:
            name = name.replace(PROMOTED_METHOD, _trial_name(promoted[0]))
        table.caption = (
            f"{table.caption}\n{name}: {100 * d.mean:+.2f} pt, 95% CI (unadjusted) "
            f"{100 * d.low:+.2f} to {100 * d.high:+.2f}: described, not tested (a yardstick "
            "or a method outside the decision rule)"
        )
    return unclipped(table)


@contextmanager
def study_progress(url: str, name: str, console: Console) -> Iterator[Callable[[], None]]:
    """A progress bar of finished trials; call the yielded function to refresh it."""
    total = study_status(url, name).n_trials_target
    columns = (
        TextColumn("trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("", total=total)

        def refresh() -> None:
            s = study_status(url, name)
            best = (
                ""
                if s.best is None or s.best.value is None
                else (f"best eval_loss {s.best.value:.4f}")
            )
            bar.update(
                task, completed=s.finished, description=f"{s.counts.get('PRUNED', 0)} pruned {best}"
            )

        yield refresh
