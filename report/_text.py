"""The report as terminal tables."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from report._alerts import alert_table
from report._build import NO_DATA, REPORT_ALERTS, Items, Report, Row

ALERTS_TITLE = f"Anomaly alerts, real time (newest {REPORT_ALERTS})"

# Columns holding a share of a whole (at most 1: shown as percentages); other fractions (buys per fav,
# PV per UV, days) are rates and keep their unit.
_SHARE = re.compile(r"rate$|share$|_per_pv$|^d\d+$")


def cell(value: Any, column: str = "") -> str:
    """A value as shown in tables: counts with thousands separators, shares as percentages, rates to two
    decimals, ids as they are (the JSON keeps full precision)."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float) or column.endswith("_id"):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.1%}" if _SHARE.search(column) else f"{value:,.2f}"


def headline(report: Report) -> list[str]:
    """What a reader must know before the tables: no data, no data in the range, data left out, a day
    not over yet."""
    days, data = report.range, report.data_range
    if days is None:
        return [NO_DATA]
    lines = []
    if data is None or days.to < data.from_ or data.to < days.from_:
        where = f": the events are from {data.from_} to {data.to}" if data else ""
        lines.append(f"No events from {days.from_} to {days.to} ({report.timezone}){where}")
    elif data.from_ < days.from_:
        lines.append(
            f"Events before {days.from_} (from {data.from_}) are left out: --from and --to report on them"
        )
    if report.complete_to is not None and report.complete_to < days.to:
        lines.append(f"{days.to} is not over yet: the PV anomaly check stops at {report.complete_to}")
    return lines


def dead_letters_title(report: Report) -> str:
    received = report.dead_letters_received
    when = "any day" if received is None else f"{received.from_} to {received.to}"
    return f"Rejected input (dead letters), received {when}"


def _table(rows: list[Row], title: str) -> list[str]:
    if not rows:
        return [title, "  (none)"]
    headers = list(rows[0])
    cells = [[cell(row[h], h) for h in headers] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.rjust(w) for c, w in zip(values, widths, strict=True)) for values in cells]
    return [title, line, *body]


def short_retention(rows: list[Row]) -> list[Row]:
    """Cohort retention without the retained counts: the cohort, its users and d1..d8."""
    return [
        {"cohort": row["cohort_date"], "users": row["users"], **{f"d{n}": row[f"d{n}"] for n in range(1, 9)}}
        for row in rows
    ]


def items_title(items: Items) -> str:
    return (
        "Top items by sales"
        if items.category_id is None
        else f"Top items of category {items.category_id} by sales"
    )


def period(report: Report) -> str:
    """The report's days, as headings show them."""
    return "no data" if report.range is None else f"{report.range.from_} to {report.range.to}"


def render_text(report: Report) -> str:
    totals = [{"behavior": name, "events": count} for name, count in report.behavior_totals.items()]
    sections = [
        *([headline(report)] if headline(report) else []),
        _table(totals, "Behaviour totals"),
        _table(report.daily, f"Daily activity ({report.timezone}, {period(report)})"),
        *_analysis_tables(report),
        _table(report.dead_letters, dead_letters_title(report)),
        _table(alert_table(report.realtime.alerts), ALERTS_TITLE),
    ]
    return "\n\n".join("\n".join(section) for section in sections)


def _analysis_tables(report: Report) -> list[list[str]]:
    pareto = report.category_pareto
    singles = {
        "buys_per_buyer": report.purchase_frequency.buys_per_buyer,
        "repurchase_rate": report.repurchase_rate.repurchase_rate,
        "categories_with_sales": pareto.categories_with_sales,
        "categories_for_80pct": pareto.categories_for_80pct,
        "lt_days": report.ltv.lt_days,
        "ltv": report.ltv.ltv,
    }
    return [
        _table(report.anomalies, "PV anomalies"),
        _table(report.hourly, "Hour of day"),
        _table([report.funnel_counts], "Funnel (events)"),
        _table([asdict(report.funnel_users)], "Funnel (users, ordered pv > cart > buy)"),
        _table([singles], "Key figures"),
        _table(report.category_sales_top, "Top categories by sales"),
        _table(report.items.sales_top, items_title(report.items)),
        _table(short_retention(report.retention), "Retention by cohort"),
        _table([asdict(sequence) for sequence in report.paths.top_sequences], "Top session paths"),
        _table(report.rfm.segments, "RFM segments"),
    ]
