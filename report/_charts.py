"""PNG charts of a report (matplotlib, headless): the HTML report embeds them, the README shows them."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from report._build import PATH_SEPARATOR, PathSequence, Report
from report._sankey import Flow, draw_sankey
from stream.events import BEHAVIORS

_SIZE = (9.0, 4.2)
_DPI = 100
_PV, _UV, _ACCENT = "#4C72B0", "#DD8452", "#C44E52"
_END = "end"  # where a session's path stops
_BEHAVIOR_COLORS = {"pv": _PV, "fav": "#55A868", "cart": _UV, "buy": _ACCENT, _END: "#AAAAAA"}


def _daily(report: Report, axes: Axes) -> None:
    days = [row["date"][5:] for row in report.daily]
    flagged = {row["date"][5:] for row in report.anomalies}
    colors = [_ACCENT if day in flagged else _PV for day in days]
    axes.bar(days, [row["pv"] for row in report.daily], color=colors, label="PV (red: anomaly)")
    axes.set_ylabel("PV")
    twin = axes.twinx()
    twin.plot(days, [row["uv"] for row in report.daily], color=_UV, marker="o", label="UV")
    twin.set_ylabel("UV")
    twin.set_ylim(bottom=0)
    axes.set_title(f"Daily PV and UV ({report.timezone})")
    axes.legend(loc="lower left")
    twin.legend(loc="lower right")


def _hourly(report: Report, axes: Axes) -> None:
    hours = [row["hour"] for row in report.hourly]
    axes.bar(hours, [row["pv"] for row in report.hourly], color=_PV, label="PV")
    axes.set_xticks(range(0, 24, 2))
    axes.set_xlabel("hour of day")
    axes.set_ylabel("PV")
    twin = axes.twinx()
    twin.plot(hours, [row["pay_rate"] for row in report.hourly], color=_ACCENT, marker=".", label="pay rate")
    twin.set_ylabel("pay rate (buyers / active users)")
    axes.set_title("Activity and pay rate by hour of day")
    axes.legend(loc="upper left")
    twin.legend(loc="upper center")


def _funnel(report: Report, axes: Axes) -> None:
    users = report.funnel_users
    steps = ["pv", "cart", "buy"]
    counts = [users.pv_users, users.cart_users, users.buy_users]
    bars = axes.barh(steps[::-1], counts[::-1], color=[_ACCENT, _UV, _PV])
    for bar, count in zip(bars, counts[::-1], strict=True):
        share = count / counts[0] if counts[0] else 0.0
        axes.text(
            bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {count:,} ({share:.0%})", va="center"
        )
    axes.set_xlim(right=max([*counts, 1]) * 1.25)
    hours = users.window_seconds // 3_600
    axes.set_title(f"Ordered funnel: users reaching pv > cart > buy within {hours} h")


def _retention(report: Report, axes: Axes) -> None:
    cohorts = report.retention
    axes.set_title("Retention by cohort (first active day)")
    if not cohorts:  # imshow needs at least one row
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return
    days = [f"d{n}" for n in range(1, 9)]
    grid = [[row[day] if row[day] is not None else float("nan") for day in days] for row in cohorts]
    image = axes.imshow(grid, cmap="YlGnBu", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(days)), days)
    axes.set_yticks(range(len(cohorts)), [f"{row['cohort_date']} ({row['users']:,})" for row in cohorts])
    for y, values in enumerate(grid):
        for x, value in enumerate(values):
            if value == value:  # NaN (not observable yet) stays blank
                axes.text(x, y, f"{value:.0%}", ha="center", va="center", fontsize=7)
    axes.figure.colorbar(image, ax=axes, label="retained share")


def _pareto(report: Report, axes: Axes) -> None:
    pareto = report.category_pareto
    curve = pareto.curve
    total = len(curve) or 1
    axes.plot([row["rank"] / total for row in curve], [row["cumulative_share"] for row in curve], color=_PV)
    axes.axhline(0.8, color=_ACCENT, linestyle="--", linewidth=1)
    cut = pareto.categories_for_80pct
    axes.axvline(cut / total, color=_ACCENT, linestyle="--", linewidth=1)
    axes.set_xlabel(f"share of the {pareto.categories_with_sales:,} categories with sales")
    axes.set_ylabel("cumulative share of sales")
    axes.set_title(f"Category Pareto: {cut:,} categories ({cut / total:.0%}) make 80 % of sales")


def _paths(report: Report, axes: Axes) -> None:
    paths = report.paths
    if not paths.top_sequences:
        axes.set_title("Session paths")
        axes.set_axis_off()
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return
    share = sum(sequence.share for sequence in paths.top_sequences)
    axes.set_title(
        f"Session paths (gap <= {paths.session_gap_seconds // 60} min), step by step: "
        f"the {len(paths.top_sequences)} most frequent, {share:.0%} of sessions"
    )
    flows = _path_flows(paths.top_sequences)
    steps = max(flow.column for flow in flows) + 1
    labels = [f"step {step}" for step in range(1, steps + 1)]
    draw_sankey(axes, flows, order=[*BEHAVIORS, _END], colors=_BEHAVIOR_COLORS, column_labels=labels)


def _path_flows(sequences: list[PathSequence]) -> list[Flow]:
    """Sessions going from step N's behaviour to step N + 1's, or to the end of their path."""
    flows: Counter[tuple[int, str, str]] = Counter()
    for sequence in sequences:
        steps = [*sequence.path.split(PATH_SEPARATOR), _END]
        for column, (source, target) in enumerate(pairwise(steps)):
            flows[column, source, target] += sequence.sessions
    return [Flow(column, source, target, value) for (column, source, target), value in flows.items()]


CHARTS: dict[str, Callable[[Report, Axes], None]] = {
    "daily": _daily,
    "hourly": _hourly,
    "funnel": _funnel,
    "retention": _retention,
    "pareto": _pareto,
    "paths": _paths,
}


def render_png(report: Report, name: str) -> bytes:
    figure = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    CHARTS[name](report, figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
