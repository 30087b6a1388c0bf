"""The report as terminal tables."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from report._alerts import alert_table
from report._build import NO_DATA, REPORT_ALERTS, Items, Report, Row


def cell(value: Any) -> str:
    """A value as shown in tables: ratios to 4 significant digits (the JSON keeps full precision)."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1_000 else f"{value:.4g}"
    return "-" if value is None else str(value)


def _table(rows: list[Row], title: str) -> list[str]:
    if not rows:
        return [title, "  (none)"]
    headers = list(rows[0])
    cells = [[cell(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.rjust(w) for c, w in zip(values, widths, strict=True)) for values in cells]
    return [title, line, *body]


def _short_retention(rows: list[Row]) -> list[Row]:
    def percent(rate: float | None) -> str:
        return "-" if rate is None else f"{rate:.0%}"

    return [
        {
            "cohort": row["cohort_date"],
            "users": row["users"],
            **{f"d{n}": percent(row[f"d{n}"]) for n in range(1, 9)},
        }
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
        *([[NO_DATA]] if report.range is None else []),
        _table(totals, "Behaviour totals"),
        _table(report.daily, f"Daily activity ({report.timezone}, {period(report)})"),
        *_analysis_tables(report),
        _table(report.dead_letters, "Rejected input (dead letters)"),
        _table(alert_table(report.realtime.alerts), f"Anomaly alerts, real time (newest {REPORT_ALERTS})"),
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
        _table(_short_retention(report.retention), "Retention by cohort"),
        _table([asdict(sequence) for sequence in report.paths.top_sequences], "Top session paths"),
        _table(report.rfm.segments, "RFM segments"),
    ]
