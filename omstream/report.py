"""`omstream report`: the analyses of `clickhouse/queries`, as one JSON-ready dict, terminal tables or HTML.

Every figure comes from one catalogue query; this module only picks parameters, reshapes rows and applies
the LTV arithmetic to inputs the data set lacks (ARPU, CAC).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from clickhouse import query_rows
from omstream.settings import Settings
from stream.events import BEHAVIORS

ANOMALY_MADS = 3.0  # the generator's two weekday levels keep the MAD steady enough for 3 to flag one spike
SESSION_GAP_S = 1_800
FUNNEL_WINDOW_S = 86_400
RETENTION_RULE = {1: 0.40, 7: 0.20, 30: 0.10}  # the 40-20-10 rule: day-1, week and month retention
RETENTION_CURVE_DAYS = 30
LTV_HORIZON_DAYS = 365


@dataclass(frozen=True)
class ReportOptions:
    date_from: date | None = None  # None: the first day with data
    date_to: date | None = None  # None: the last day with data
    arpu: float | None = None  # revenue per active user per day
    cac: float | None = None  # cost to acquire one user
    top: int = 10
    min_visitors: int = 10  # pay-rate rankings leave out categories and items with fewer visitors
    category: int | None = None  # items are shown for this category; None: the best-selling one
    recent_days: int = 3  # RFM: a buyer is recent when their last buy is at most this many days old
    frequent_buys: int = 2  # RFM: a buyer is frequent with at least this many buys


def build_report(client: Client, settings: Settings, options: ReportOptions | None = None) -> dict[str, Any]:
    options = options or ReportOptions()
    span = _date_range(client, settings.timezone, options)

    def rows(name: str, **extra: Any) -> list[dict[str, Any]]:
        return query_rows(client, name, **span, **extra)

    def sales(order: str, min_visitors: int, category: int = 0) -> list[dict[str, Any]]:
        level = "item" if category else "category"
        return rows(
            "sales_stats",
            level=level,
            category=category,
            order=order,
            min_visitors=min_visitors,
            top=options.top,
        )

    funnel = rows("funnel_counts")[0]
    categories = sales("sales", min_visitors=1)
    items = _items(sales, options, categories)
    retention_curve = rows("retention_curve", days=RETENTION_CURVE_DAYS)
    return {
        "timezone": settings.timezone,
        "range": {"from": span["from"].isoformat(), "to": span["to"].isoformat()},
        "daily": rows("daily_activity"),
        "hourly": rows("hourly_activity"),
        "behavior_totals": {behavior: funnel[behavior] for behavior in BEHAVIORS},
        "behavior_daily": rows("behavior_daily"),
        "anomalies": _anomalies(rows("pv_anomalies", k=ANOMALY_MADS)),
        "purchase_frequency": {
            **rows("purchase_frequency")[0],
            "distribution": rows("purchase_frequency_distribution"),
        },
        "fav_to_buy": _ratio_by_level(funnel, categories, items, "fav_to_buy"),
        "cart_to_buy": _ratio_by_level(funnel, categories, items, "cart_to_buy"),
        "category_sales_top": categories,
        "category_pay_rate_top": sales("pay_rate", min_visitors=options.min_visitors),
        "items": items,
        "category_pareto": _pareto(rows("category_pareto")),
        "retention": rows("retention"),
        "retention_curve": retention_curve,
        "retention_rule": _retention_rule(retention_curve),
        "repurchase_rate": {
            **rows("repurchase_rate")[0],
            "definition": "buyers with buys on >= 2 distinct days / all buyers",
        },
        "funnel_counts": funnel,
        "funnel_users": {
            "window_seconds": FUNNEL_WINDOW_S,
            **rows("funnel_users", window=FUNNEL_WINDOW_S)[0],
        },
        "paths": _paths(rows("session_paths", gap=SESSION_GAP_S), options.top),
        "rfm": {
            "recent_days": options.recent_days,
            "frequent_buys": options.frequent_buys,
            "segments": rows("rfm", recent_days=options.recent_days, frequent_buys=options.frequent_buys),
        },
        "ltv": ltv(retention_curve, options.arpu, options.cac),
        "dead_letters": query_rows(client, "dead_letters_by_reason"),
        "realtime": {
            "hourly": query_rows(client, "realtime_hourly", tz=settings.timezone),
            "funnel_daily": query_rows(client, "realtime_funnel_daily", tz=settings.timezone),
        },
    }


def _date_range(client: Client, timezone: str, options: ReportOptions) -> dict[str, Any]:
    span = query_rows(client, "data_span", tz=timezone)[0]
    first = options.date_from or date.fromisoformat(span["first_day"])
    last = options.date_to or date.fromisoformat(span["last_day"])
    return {"tz": timezone, "from": first, "to": last}


def _anomalies(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def reason(row: dict[str, Any]) -> str:
        direction = "above" if row["pv"] > row["median_pv"] else "below"
        return (
            # a MAD of 0 leaves no deviation count (NULL): any other PV is then infinitely many MADs away
            f"PV {row['pv']:,} is {abs(row['deviations'] or math.inf):.1f} MADs {direction} the median "
            f"{row['median_pv']:,.0f} (rule: > {ANOMALY_MADS:g} MADs); PV/UV {row['pv_per_uv']:.2f} vs "
            f"median {row['median_pv_per_uv']:.2f}"
        )

    return [{**row, "reason": reason(row)} for row in rows]


def _ratio_by_level(
    funnel: dict[str, Any], categories: list[dict[str, Any]], items: dict[str, Any], ratio: str
) -> dict[str, Any]:
    return {
        "overall": funnel[ratio],
        "top_categories": [{"category_id": row["category_id"], ratio: row[ratio]} for row in categories],
        "top_items": [{"item_id": row["item_id"], ratio: row[ratio]} for row in items["sales_top"]],
    }


def _items(
    sales: Callable[..., list[dict[str, Any]]], options: ReportOptions, categories: list[dict[str, Any]]
) -> dict[str, Any]:
    """Items of the chosen category (default: the best-selling one), ranked like the categories."""
    category = options.category if options.category is not None else _first_category(categories)
    if category is None:
        return {"category_id": None, "sales_top": [], "pay_rate_top": []}
    return {
        "category_id": category,
        "sales_top": sales("sales", min_visitors=1, category=category),
        "pay_rate_top": sales("pay_rate", min_visitors=options.min_visitors, category=category),
    }


def _first_category(categories: list[dict[str, Any]]) -> int | None:
    return int(categories[0]["category_id"]) if categories else None


def _pareto(curve: list[dict[str, Any]]) -> dict[str, Any]:
    cut = next((row["rank"] for row in curve if row["reaches_80pct"]), 0)
    return {
        "categories_with_sales": len(curve),
        "categories_for_80pct": cut,
        "share_of_categories_for_80pct": cut / len(curve) if curve else None,
        "curve": [{"rank": row["rank"], "cumulative_share": row["cumulative_share"]} for row in curve],
    }


def _retention_rule(curve: list[dict[str, Any]]) -> dict[str, Any]:
    observed = {row["day"]: row["rate"] for row in curve}

    def check(day: int, threshold: float) -> dict[str, Any]:
        rate = observed.get(day)
        return {"threshold": threshold, "rate": rate, "passes": None if rate is None else rate > threshold}

    return {f"d{day}": check(day, threshold) for day, threshold in RETENTION_RULE.items()}


def _paths(paths: list[dict[str, Any]], top: int) -> dict[str, Any]:
    sessions = sum(row["sessions"] for row in paths)
    transitions: dict[tuple[str, str], int] = {}
    for row in paths:
        for step in pairwise(row["path"]):
            transitions[step] = transitions.get(step, 0) + row["sessions"]
    ranked = sorted(transitions.items(), key=lambda item: (-item[1], item[0]))
    return {
        "session_gap_seconds": SESSION_GAP_S,
        "sessions": sessions,
        "top_sequences": [
            {
                "path": " > ".join(row["path"]),
                "sessions": row["sessions"],
                "share": row["sessions"] / sessions,
            }
            for row in paths[:top]
        ],
        "top_transitions": [{"from": a, "to": b, "count": count} for (a, b), count in ranked[:top]],
    }


def ltv(curve: list[dict[str, Any]], arpu: float | None, cac: float | None) -> dict[str, Any]:
    """LT = expected active days per user: 1 (day 0) + the day-N retention rates, observed where known and
    from a least-squares fit rate = a + b·ln(N) beyond, up to LTV_HORIZON_DAYS or where the fit reaches 0.
    LTV = LT * ARPU (per active day); payback = first day whose cumulative expected revenue covers CAC."""
    if not curve:  # no cohort with an observable day 1: nothing to measure
        return {
            "lt_days": None,
            "lt_days_observed": None,
            "horizon_days": LTV_HORIZON_DAYS,
            "fit": None,
            "arpu": arpu,
            "cac": cac,
            "ltv": None,
            "ltv_to_cac": None,
            "payback_days": None,
        }
    days = np.array([row["day"] for row in curve], dtype=float)
    rates = np.array([row["rate"] for row in curve], dtype=float)
    slope, intercept = np.polyfit(np.log(days), rates, 1) if len(curve) > 1 else (0.0, rates[0])
    horizon = np.arange(1, LTV_HORIZON_DAYS + 1, dtype=float)
    expected = np.clip(intercept + slope * np.log(horizon), 0.0, 1.0)
    expected[: len(rates)] = rates
    cumulative = 1.0 + np.cumsum(expected)  # expected active days by day N, day 0 included
    value = float(cumulative[-1]) * arpu if arpu is not None else None
    return {
        "lt_days": float(cumulative[-1]),
        "lt_days_observed": 1.0 + float(rates.sum()),
        "horizon_days": LTV_HORIZON_DAYS,
        "fit": {"intercept": float(intercept), "log_slope": float(slope)},
        "arpu": arpu,
        "cac": cac,
        "ltv": value,
        "ltv_to_cac": value / cac if value is not None and cac else None,
        "payback_days": _payback(cumulative, arpu, cac),
    }


def _payback(cumulative: np.ndarray[Any, Any], arpu: float | None, cac: float | None) -> int | None:
    if arpu is None or cac is None or arpu <= 0:
        return None
    reached = np.nonzero(cumulative * arpu >= cac)[0]
    return int(reached[0]) + 1 if len(reached) else None


def cell(value: Any) -> str:
    """A value as shown in tables: ratios to 4 significant digits (the JSON keeps full precision)."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1_000 else f"{value:.4g}"
    return "-" if value is None else str(value)


def _table(rows: list[dict[str, Any]], title: str) -> list[str]:
    if not rows:
        return [title, "  (none)"]
    headers = list(rows[0])
    cells = [[cell(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.rjust(w) for c, w in zip(values, widths, strict=True)) for values in cells]
    return [title, line, *body]


def _short_retention(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def render_text(report: dict[str, Any]) -> str:
    totals = [{"behavior": name, "events": count} for name, count in report["behavior_totals"].items()]
    sections = [
        _table(totals, "Behaviour totals"),
        _table(
            report["daily"],
            f"Daily activity ({report['timezone']}, {report['range']['from']} to {report['range']['to']})",
        ),
        *_analysis_tables(report),
        _table(report["dead_letters"], "Rejected input (dead letters)"),
    ]
    return "\n\n".join("\n".join(section) for section in sections)


def _analysis_tables(report: dict[str, Any]) -> list[list[str]]:
    frequency = report["purchase_frequency"]
    pareto = report["category_pareto"]
    singles = {
        "buys_per_buyer": frequency["buys_per_buyer"],
        "repurchase_rate": report["repurchase_rate"]["repurchase_rate"],
        "categories_with_sales": pareto["categories_with_sales"],
        "categories_for_80pct": pareto["categories_for_80pct"],
        "lt_days": report["ltv"]["lt_days"],
        "ltv": report["ltv"]["ltv"],
    }
    return [
        _table(report["anomalies"], "PV anomalies"),
        _table(report["hourly"], "Hour of day"),
        _table([report["funnel_counts"]], "Funnel (events)"),
        _table([report["funnel_users"]], "Funnel (users, ordered pv > cart > buy)"),
        _table([singles], "Key figures"),
        _table(report["category_sales_top"], "Top categories by sales"),
        _table(_short_retention(report["retention"]), "Retention by cohort"),
        _table(report["paths"]["top_sequences"], "Top session paths"),
        _table(report["rfm"]["segments"], "RFM segments"),
    ]
