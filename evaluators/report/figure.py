"""The comparison report's plotly figure (:mod:`evaluators.report.build`) and its PNG rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluators.baselines.suite import BASE_MODEL
from evaluators.report.rows import REFERENCE_ROWS, label
from evaluators.report.summary import headline
from evaluators.stats.families import FAMILY_KEY

FIGURE_SIZE = (1400, 1600)
"""Width and height of the PNG, in pixels (before ``PNG_SCALE``)."""


PNG_SCALE = 1


VERDICT_COLORS = {True: "#2ca02c", False: "#7f7f7f"}
"""Colour of a tested difference in the forest plot, by verdict: beats, does not beat."""
BASE_LINE_COLOR = "#ff7f0e"
"""Colour of the base model's line across the bars: step 4's bar for any main result."""


def comparison_figure(report: Mapping[str, Any]) -> Any:
    """The plotly figure: bars with CIs per method (the base model's score drawn across them as
    step 4's bar) beside a forest plot of the decision's paired differences (the test itself:
    each with its 95% CI, coloured by verdict, the minimum effect and zero marked), the study's
    eval_loss history, and per-persona scores per method."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    min_effect = float(report.get("min_effect_percent_points") or 0.0)
    fig = make_subplots(
        rows=3,
        cols=2,
        column_widths=[0.52, 0.48],
        horizontal_spacing=0.2,
        vertical_spacing=0.14,
        row_heights=[0.4, 0.22, 0.38],
        specs=[[{}, {}], [{"colspan": 2}, None], [{"colspan": 2}, None]],
        subplot_titles=(
            "Similarity on the identical test examples (bars: mean over<br>personas; whiskers: "
            "95% persona-level CI; diamonds: floor;<br>green: main result, red: degenerate, "
            "grey: yardsticks)",
            "The decision's test: paired differences (pt), 95% CI,<br>"
            f"Holm-corrected family; beats needs the CI above the<br>minimum effect "
            f"({min_effect:.1f} pt, dashed) and Holm p < 0.05",
            "eval_loss of the study's trials (validation split)",
            "Per-persona similarity",
        ),
    )
    rows = report["rows"]
    names = list(rows)
    labels = [_wrapped(rows[n]["label"]) for n in names]
    means = [100 * rows[n]["mean_similarity"] for n in names]
    cis = [rows[n]["mean_similarity_ci"] for n in names]
    plus = [0.0 if c is None else 100 * c["high"] - m for c, m in zip(cis, means, strict=True)]
    minus = [0.0 if c is None else m - 100 * c["low"] for c, m in zip(cis, means, strict=True)]
    main = report["decision"]["main_result"]
    colors = [
        "#d62728"
        if rows[n]["degenerate"]
        else "#2ca02c"
        if n == main
        else "#b0b0b0"
        if n in REFERENCE_ROWS
        else "#1f77b4"
        for n in names
    ]
    fig.add_trace(
        go.Bar(
            x=labels,
            y=means,
            marker_color=colors,
            error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus},
            text=[f"{m:.1f}%" for m in means],
            textposition="inside",  # above the bar, the CI whisker crosses the label
            insidetextanchor="start",  # at the foot of the bar, clear of whisker and floor
            textfont={"color": "white"},
            name="similarity",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=labels,
            y=[100 * rows[n]["floor"] for n in names],
            mode="markers",
            marker={"symbol": "diamond", "size": 9, "color": "black"},
            name="floor (other personas' references)",
        ),
        row=1,
        col=1,
    )
    if BASE_MODEL in rows:  # a line across every bar, named in the legend
        base = 100 * rows[BASE_MODEL]["mean_similarity"]
        fig.add_trace(
            go.Scatter(
                x=labels,
                y=[base] * len(labels),
                mode="lines",
                line={"color": BASE_LINE_COLOR, "dash": "dot", "width": 2},
                name=f"base model {base:.1f}%: step 4's bar",
            ),
            row=1,
            col=1,
        )
    fig.update_yaxes(title_text="similarity (%)", row=1, col=1)
    fig.update_xaxes(tickangle=-35, row=1, col=1)
    _add_forest(fig, report, min_effect)

    history = report.get("history") or []
    for state, color, symbol in (
        ("COMPLETE", "#1f77b4", "circle"),
        ("PRUNED", "#ff7f0e", "x"),
    ):
        points = [
            (t["number"], t["value"] if t["value"] is not None else _last(t["intermediate"]))
            for t in history
            if t["state"] == state
        ]
        points = [(n, v) for n, v in points if v is not None]
        if points:
            fig.add_trace(
                go.Scatter(
                    x=[n for n, _ in points],
                    y=[v for _, v in points],
                    mode="markers",
                    marker={"color": color, "symbol": symbol, "size": 9},
                    name=f"{state.lower()} trial"
                    + (" (last reported)" if state == "PRUNED" else ""),
                ),
                row=2,
                col=1,
            )
    best: list[tuple[int, float]] = []
    for t in sorted(history, key=lambda t: t["number"]):
        if t["value"] is not None:
            low = t["value"] if not best else min(best[-1][1], t["value"])
            best.append((t["number"], low))
    if best:
        fig.add_trace(
            go.Scatter(
                x=[n for n, _ in best],
                y=[v for _, v in best],
                mode="lines",
                line={"shape": "hv", "color": "#2ca02c"},
                name="best so far",
            ),
            row=2,
            col=1,
        )
    fig.update_xaxes(title_text="trial", tickformat="d", dtick=1, row=2, col=1)
    fig.update_yaxes(title_text="eval_loss", row=2, col=1)

    per_persona = report.get("per_persona") or {}
    for name in names:
        values = list(per_persona.get(name, {}).values())
        fig.add_trace(
            go.Box(
                y=[100 * v for v in values],
                name=_wrapped(rows[name]["label"]),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"size": 3},
                line={"width": 1},
                showlegend=False,
            ),
            row=3,
            col=1,
        )
    fig.update_yaxes(title_text="persona mean similarity (%)", row=3, col=1)
    fig.update_layout(
        # the title (two lines) at the very top, the legend in its own band below it and
        # above the first subplot's title, so that neither covers the other
        title={
            "text": f"Study {report['study']}: comparison of methods<br>"
            + headline(report).replace("; ", ";<br>"),
            "y": 0.985,
            "yanchor": "top",
        },
        width=FIGURE_SIZE[0],
        height=FIGURE_SIZE[1],
        template="plotly_white",
        legend={"orientation": "h", "y": 1.05, "yanchor": "bottom", "x": 0},
        margin={"t": 260},
    )
    return fig


def _add_forest(fig: Any, report: Mapping[str, Any], min_effect: float) -> None:
    """The forest plot of the decision's tested family (row 1, column 2): each difference with
    its 95% CI, one trace per verdict, top to bottom in the family's order; vertical lines at
    zero and at the minimum effect."""
    import plotly.graph_objects as go

    family = report.get(report.get(FAMILY_KEY, ""), {})
    cluster_id = report.get("cluster_id")
    names = list(family)
    labels = {n: " −<br>".join(label(m, cluster_id) for m in n.split(" - ", 1)) for n in names}
    for verdict, text in ((True, "beats"), (False, "does not beat")):
        shown = [n for n in names if bool(family[n]["beats"]) == verdict]
        if not shown:
            continue
        diffs = [family[n]["mean_percent_points"] for n in shown]
        lows = [family[n]["ci_percent_points"][0] for n in shown]
        highs = [family[n]["ci_percent_points"][1] for n in shown]
        fig.add_trace(
            go.Scatter(
                x=diffs,
                y=[labels[n] for n in shown],
                mode="markers",
                marker={"color": VERDICT_COLORS[verdict], "size": 11, "symbol": "square"},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [h - d for h, d in zip(highs, diffs, strict=True)],
                    "arrayminus": [d - lo for d, lo in zip(diffs, lows, strict=True)],
                    "thickness": 2,
                },
                customdata=[family[n]["p_holm"] for n in shown],
                hovertemplate="%{y}: %{x:+.2f} pt, Holm p=%{customdata:.3g}<extra></extra>",
                name=f"{text} (paired difference, 95% CI)",
            ),
            row=1,
            col=2,
        )
    fig.add_vline(x=0, line={"color": "black", "width": 1}, row=1, col=2)
    if min_effect > 0:
        fig.add_vline(
            x=min_effect,
            line={"color": VERDICT_COLORS[True], "dash": "dash", "width": 2},
            row=1,
            col=2,
        )
    fig.update_yaxes(
        categoryorder="array",
        categoryarray=[labels[n] for n in names],
        autorange="reversed",
        row=1,
        col=2,
    )
    fig.update_xaxes(
        title_text=f"difference (pt); solid: 0, dashed: minimum effect {min_effect:.1f} pt",
        row=1,
        col=2,
    )


AXIS_NOTE_CHARS = 20
"""A label's parenthesis longer than this is left off the axis (the tables keep it): at the
axis's slant, "(two references of the same persona)" ran into its neighbour's label."""


def _wrapped(text: str) -> str:
    """A long label on two lines, before its parenthesis (an axis label that fits its plot),
    or without a long parenthesis."""
    head, paren, note = text.partition(" (")
    if not paren:
        return text
    return head if len(note) > AXIS_NOTE_CHARS else f"{head}<br>({note}"


def _last(intermediate: Mapping[str, float]) -> float | None:
    if not intermediate:
        return None
    return intermediate[max(intermediate, key=int)]


def render_png(figure: Any) -> bytes:
    """The figure as PNG bytes, rendered by kaleido (which drives Chromium).

    Raises:
        RuntimeError: If kaleido or a Chromium browser is missing, naming what to install.
    """
    try:
        return bytes(
            figure.to_image(
                format="png", width=FIGURE_SIZE[0], height=FIGURE_SIZE[1], scale=PNG_SCALE
            )
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise RuntimeError(
            f"could not render the PNG ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "it needs kaleido>=1 (pip) and a Chromium: apt-get install chromium, or "
            "`plotly_get_chrome`"
        ) from exc
