"""The comparison report's plotly figure (:mod:`evaluators.report.build`) and its PNG rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluators.report.rows import REFERENCE_ROWS
from evaluators.report.summary import headline

FIGURE_SIZE = (1400, 1600)
"""Width and height of the PNG, in pixels (before ``PNG_SCALE``)."""


PNG_SCALE = 1


def comparison_figure(report: Mapping[str, Any]) -> Any:
    """The plotly figure: bars with CIs per method, the study's eval_loss history, and
    per-persona scores per method."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3,
        cols=1,
        vertical_spacing=0.09,
        row_heights=[0.38, 0.24, 0.38],
        subplot_titles=(
            "Similarity on the identical test examples (bars: mean over personas; "
            "whiskers: 95% persona-level CI; diamonds: floor;<br>green: main result, red: "
            "degenerate, grey: yardsticks)",
            "eval_loss of the study's trials (validation split)",
            "Per-persona similarity",
        ),
    )
    rows = report["rows"]
    names = list(rows)
    labels = [rows[n]["label"] for n in names]
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
    fig.update_yaxes(title_text="similarity (%)", row=1, col=1)

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
                name=rows[name]["label"],
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
            "text": f"Study {report['study']}: comparison of methods<br>{headline(report)}",
            "y": 0.985,
            "yanchor": "top",
        },
        width=FIGURE_SIZE[0],
        height=FIGURE_SIZE[1],
        template="plotly_white",
        legend={"orientation": "h", "y": 1.045, "yanchor": "bottom", "x": 0},
        margin={"t": 230},
    )
    return fig


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
