"""The analyses of `clickhouse/queries` as a typed `Report`, and its JSON.

Every figure comes from one catalogue query; this module only picks parameters, reshapes rows and applies
the LTV arithmetic to inputs the data set lacks (ARPU, CAC).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from clickhouse_connect.driver.client import Client

from clickhouse import query_rows
from report._alerts import list_alerts
from stream.events import BEHAVIORS

ANOMALY_MADS = 3.0  # the generator's two weekday levels keep the MAD steady enough for 3 to flag one spike
SESSION_GAP_S = 1_800
RETENTION_RULE = {1: 0.40, 7: 0.20, 30: 0.10}  # the 40-20-10 rule: day-1, week and month retention
RETENTION_CURVE_DAYS = 30
REPORT_ALERTS = 50  # the newest anomaly alerts the report lists
LTV_HORIZON_DAYS = 365
_EVERY_GROUP = 1 << 31  # a `top` that keeps every category (or item)
PATH_SEPARATOR = " > "
NO_DATA = (
    "No data: ClickHouse has no events yet (load some with `omstream demo`, "
    "or `omstream up` and `omstream replay FILE`)"
)
_EPOCH = date(1970, 1, 1)  # ClickHouse's first Date
RUN_GAP_DAYS = 7  # this many days without events end a run of data: the default range is the latest run

Row = dict[str, Any]  # a query's row, keyed by the SQL's own column names (the SQL defines them once)


class NoSchema(RuntimeError):
    """ClickHouse has none of OMStream's tables: nothing was ever loaded there."""


class BadRange(ValueError):
    """Days asked for that end before they start (a missing end being the data's)."""


@dataclass(frozen=True)
class DateRange:
    from_: date  # `from` in JSON (a Python keyword)
    to: date


_EVERY_DAY = DateRange(_EPOCH, date(2105, 12, 31))  # every day of ClickHouse's DateTime


@dataclass(frozen=True)
class PurchaseFrequency:
    buyers: int
    buys: int
    buys_per_buyer: float | None
    distribution: list[Row]


@dataclass(frozen=True)
class ConversionByLevel:
    """One conversion ratio overall and for the top categories and items by sales."""

    overall: float | None
    top_categories: list[Row]
    top_items: list[Row]


@dataclass(frozen=True)
class Items:
    """Items of one category (None: no category has sales), ranked like the categories."""

    category_id: int | None
    sales_top: list[Row]
    pay_rate_top: list[Row]


@dataclass(frozen=True)
class Pareto:
    categories_with_sales: int
    categories_for_80pct: int
    share_of_categories_for_80pct: float | None
    curve: list[Row]


@dataclass(frozen=True)
class RuleCheck:
    threshold: float
    rate: float | None  # None: not observable in the range
    passes: bool | None


@dataclass(frozen=True)
class RepurchaseRate:
    buyers: int
    repurchasers: int
    repurchase_rate: float | None
    definition: str = "buyers with buys on >= 2 distinct days / all buyers"


@dataclass(frozen=True)
class FunnelUsers:
    window_seconds: int
    pv_users: int
    cart_users: int
    buy_users: int
    pv_to_cart: float | None
    cart_to_buy: float | None


@dataclass(frozen=True)
class PathSequence:
    path: str  # behaviours joined by PATH_SEPARATOR
    sessions: int
    share: float


@dataclass(frozen=True)
class Transition:
    from_: str  # `from` in JSON (a Python keyword)
    to: str
    count: int


@dataclass(frozen=True)
class Paths:
    session_gap_seconds: int
    sessions: int
    top_sequences: list[PathSequence]
    top_transitions: list[Transition]


@dataclass(frozen=True)
class Rfm:
    recent_days: int
    frequent_buys: int
    segments: list[Row]


@dataclass(frozen=True)
class LtvFit:
    intercept: float
    log_slope: float


@dataclass(frozen=True)
class Ltv:
    lt_days: float | None
    lt_days_observed: float | None
    horizon_days: int
    fit: LtvFit | None
    arpu: float | None
    cac: float | None
    ltv: float | None
    ltv_to_cac: float | None
    payback_days: int | None


@dataclass(frozen=True)
class Realtime:
    """What the stream's windows stored (the batch sections are computed from the raw events)."""

    hourly: list[Row]
    funnel_daily: list[Row]
    alerts: list[Row]  # anomaly alerts, newest first (report._alerts)


@dataclass(frozen=True)
class Report:
    """The report's sections, in the order of its JSON."""

    timezone: str
    range: DateRange | None  # None: no events and no days asked for
    data_range: DateRange | None  # the first and last day with events (None: none)
    complete_to: date | None  # the range's last day that is over (today's is not): anomalies stop there
    daily: list[Row]
    hourly: list[Row]
    behavior_totals: dict[str, int]
    behavior_daily: list[Row]
    anomalies: list[Row]
    purchase_frequency: PurchaseFrequency
    fav_to_buy: ConversionByLevel
    cart_to_buy: ConversionByLevel
    category_sales_top: list[Row]
    category_pay_rate_top: list[Row]
    items: Items
    category_pareto: Pareto
    retention: list[Row]
    retention_curve: list[Row]
    retention_rule: dict[str, RuleCheck]  # "d1", "d7", "d30": RETENTION_RULE's days
    repurchase_rate: RepurchaseRate
    funnel_counts: Row
    funnel_users: FunnelUsers
    paths: Paths
    rfm: Rfm
    ltv: Ltv
    dead_letters: list[Row]
    dead_letters_received: DateRange | None  # the days the dead letters shown arrived on (None: any day)
    realtime: Realtime

    def as_json(self) -> dict[str, Any]:
        """JSON-ready data keyed by the attribute names."""
        return asdict(self, dict_factory=_json_object)


def _json_object(fields: list[tuple[str, Any]]) -> dict[str, Any]:
    # a trailing _ only keeps a name off a Python keyword; dates as ISO strings, as the queries write them
    return {
        name.removesuffix("_"): value.isoformat() if isinstance(value, date) else value
        for name, value in fields
    }


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


@dataclass(frozen=True)
class _Catalogue:
    """The catalogue's queries over one date range in one time zone."""

    client: Client
    span: dict[str, Any]  # the queries' tz, from and to

    def rows(self, name: str, **parameters: Any) -> list[Row]:
        return query_rows(self.client, name, **{**self.span, **parameters})

    def row(self, name: str, **parameters: Any) -> Row:
        """The one row of an aggregate over the whole range."""
        return self.rows(name, **parameters)[0]


def build_report(
    client: Client, timezone: str, funnel_window_s: int, options: ReportOptions | None = None
) -> Report:
    """The report over `options`' days in `timezone`; the ordered funnel counts a user's steps within
    `funnel_window_s` of their first pv."""
    if not client.command("EXISTS TABLE events_raw"):  # the schema people query (migration 0006)
        raise NoSchema(NO_DATA)
    options = options or ReportOptions()
    with_events = [date.fromisoformat(row["day"]) for row in query_rows(client, "data_days", tz=timezone)]
    span = _date_range(with_events, options)
    # Without events every range is empty, and the queries still give each section its empty form.
    days = span or DateRange(_EPOCH, _EPOCH)
    catalogue = _Catalogue(client, {"tz": timezone, "from": days.from_, "to": days.to})
    complete_to = min(days.to, datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1))
    asked = options.date_from is not None or options.date_to is not None
    received = DateRange(days.from_, days.to) if asked else None
    funnel = catalogue.row("funnel_counts")
    categories = _rankings(catalogue, options)
    items = _items(catalogue, options, categories.sales)
    curve = catalogue.rows("retention_curve", days=RETENTION_CURVE_DAYS)
    return Report(
        timezone=timezone,
        range=span,
        data_range=DateRange(with_events[0], with_events[-1]) if with_events else None,
        complete_to=complete_to if span else None,
        daily=catalogue.rows("daily_activity"),
        hourly=catalogue.rows("hourly_activity"),
        behavior_totals={behavior: funnel[behavior] for behavior in BEHAVIORS},
        behavior_daily=catalogue.rows("behavior_daily"),
        anomalies=_anomalies(catalogue.rows("pv_anomalies", k=ANOMALY_MADS, to=complete_to)),
        purchase_frequency=_purchase_frequency(catalogue),
        fav_to_buy=_conversion_by_level(funnel, categories.sales, items, "fav_to_buy"),
        cart_to_buy=_conversion_by_level(funnel, categories.sales, items, "cart_to_buy"),
        category_sales_top=categories.sales,
        category_pay_rate_top=categories.pay_rate,
        items=items,
        category_pareto=_pareto(catalogue.rows("category_pareto")),
        retention=catalogue.rows("retention"),
        retention_curve=curve,
        retention_rule=_retention_rule(curve),
        repurchase_rate=RepurchaseRate(**catalogue.row("repurchase_rate")),
        funnel_counts=funnel,
        funnel_users=FunnelUsers(funnel_window_s, **catalogue.row("funnel_users", window=funnel_window_s)),
        paths=_paths(catalogue.rows("session_paths", gap=SESSION_GAP_S), options.top),
        rfm=_rfm(catalogue, options),
        ltv=ltv(curve, options.arpu, options.cac),
        dead_letters=catalogue.rows("dead_letters_by_reason", **_days(received or _EVERY_DAY)),
        dead_letters_received=received,
        realtime=_realtime(client, timezone),
    )


def _date_range(with_events: list[date], options: ReportOptions) -> DateRange | None:
    """The days asked for; an end not asked for is the data's: the last day with events, and the first
    day of the latest run of days with events up to the last day (runs are split by RUN_GAP_DAYS without
    events). None without events and days asked for; BadRange when the range would end before it starts."""
    first, last = options.date_from, options.date_to
    if last is None:
        last = with_events[-1] if with_events else None
        if first is not None and last is not None and first > last:
            raise BadRange(f"--from {first} is after the last day with events, {last}")
    if first is None and last is not None:
        before = [day for day in with_events if day <= last]
        if with_events and not before:
            raise BadRange(f"--to {last} is before the first day with events, {with_events[0]}")
        first = _latest_run_start(before) if before else None
    if first is None or last is None:
        return None
    if first > last:
        raise BadRange(f"--from {first} is after --to {last}")
    return DateRange(first, last)


def _latest_run_start(days: list[date]) -> date:
    """The first day of the latest run of `days` (sorted) without a gap of RUN_GAP_DAYS or more."""
    start = days[-1]
    for earlier in reversed(days[:-1]):
        if (start - earlier).days > RUN_GAP_DAYS:
            break
        start = earlier
    return start


def _days(days: DateRange) -> dict[str, date]:
    return {"from": days.from_, "to": days.to}


@dataclass(frozen=True)
class _Rankings:
    sales: list[Row]
    pay_rate: list[Row]


def _rankings(catalogue: _Catalogue, options: ReportOptions, category: int = 0) -> _Rankings:
    """The top categories (with `category`, the top items of that category) by sales and by pay rate.

    One pass of `sales_stats` gives every group's figures (the aggregation is the costly part); both
    rankings follow its order: by sales (ties by id), and by pay rate among the groups with at least
    `min_visitors` visitors (ties by sales, then id)."""
    level = "item" if category else "category"
    rows = catalogue.rows(
        "sales_stats", level=level, category=category, order="sales", min_visitors=1, top=_EVERY_GROUP
    )
    if not category:  # a category's row stands for all its items: the query's item_id is a placeholder 0
        rows = [{column: value for column, value in row.items() if column != "item_id"} for row in rows]
    by_pay_rate = sorted(
        (row for row in rows if row["visitors"] >= options.min_visitors),
        key=lambda row: -row["pay_rate"],  # stable: ties keep the sales order
    )
    return _Rankings(rows[: options.top], by_pay_rate[: options.top])


def _purchase_frequency(catalogue: _Catalogue) -> PurchaseFrequency:
    return PurchaseFrequency(
        **catalogue.row("purchase_frequency"), distribution=catalogue.rows("purchase_frequency_distribution")
    )


def _rfm(catalogue: _Catalogue, options: ReportOptions) -> Rfm:
    segments = catalogue.rows("rfm", recent_days=options.recent_days, frequent_buys=options.frequent_buys)
    return Rfm(options.recent_days, options.frequent_buys, segments)


def _realtime(client: Client, timezone: str) -> Realtime:
    return Realtime(
        hourly=query_rows(client, "realtime_hourly", tz=timezone),
        funnel_daily=query_rows(client, "realtime_funnel_daily", tz=timezone),
        alerts=list_alerts(client, timezone, limit=REPORT_ALERTS),
    )


def _anomalies(rows: list[Row]) -> list[Row]:
    def reason(row: Row) -> str:
        direction = "above" if row["pv"] > row["median_pv"] else "below"
        return (
            # a MAD of 0 leaves no deviation count (NULL): any other PV is then infinitely many MADs away
            f"PV {row['pv']:,} is {abs(row['deviations'] or math.inf):.1f} MADs {direction} the median "
            f"{row['median_pv']:,.0f} (rule: > {ANOMALY_MADS:g} MADs); PV/UV {row['pv_per_uv']:.2f} vs "
            f"median {row['median_pv_per_uv']:.2f}"
        )

    return [{**row, "reason": reason(row)} for row in rows]


def _conversion_by_level(funnel: Row, categories: list[Row], items: Items, ratio: str) -> ConversionByLevel:
    return ConversionByLevel(
        overall=funnel[ratio],
        top_categories=[{"category_id": row["category_id"], ratio: row[ratio]} for row in categories],
        top_items=[{"item_id": row["item_id"], ratio: row[ratio]} for row in items.sales_top],
    )


def _items(catalogue: _Catalogue, options: ReportOptions, categories: list[Row]) -> Items:
    """Items of the chosen category (default: the best-selling one), ranked like the categories."""
    category = options.category if options.category is not None else _first_category(categories)
    if category is None:
        return Items(category_id=None, sales_top=[], pay_rate_top=[])
    rankings = _rankings(catalogue, options, category)
    return Items(category_id=category, sales_top=rankings.sales, pay_rate_top=rankings.pay_rate)


def _first_category(categories: list[Row]) -> int | None:
    return int(categories[0]["category_id"]) if categories else None


def _pareto(curve: list[Row]) -> Pareto:
    cut = next((row["rank"] for row in curve if row["reaches_80pct"]), 0)
    return Pareto(
        categories_with_sales=len(curve),
        categories_for_80pct=cut,
        share_of_categories_for_80pct=cut / len(curve) if curve else None,
        curve=[{"rank": row["rank"], "cumulative_share": row["cumulative_share"]} for row in curve],
    )


def _retention_rule(curve: list[Row]) -> dict[str, RuleCheck]:
    observed = {row["day"]: row["rate"] for row in curve}

    def check(day: int, threshold: float) -> RuleCheck:
        rate = observed.get(day)
        return RuleCheck(threshold, rate, None if rate is None else rate > threshold)

    return {f"d{day}": check(day, threshold) for day, threshold in RETENTION_RULE.items()}


def _paths(paths: list[Row], top: int) -> Paths:
    sessions = sum(row["sessions"] for row in paths)
    transitions: dict[tuple[str, str], int] = {}
    for row in paths:
        for step in pairwise(row["path"]):
            transitions[step] = transitions.get(step, 0) + row["sessions"]
    ranked = sorted(transitions.items(), key=lambda item: (-item[1], item[0]))
    return Paths(
        session_gap_seconds=SESSION_GAP_S,
        sessions=sessions,
        top_sequences=[
            PathSequence(PATH_SEPARATOR.join(row["path"]), row["sessions"], row["sessions"] / sessions)
            for row in paths[:top]
        ],
        top_transitions=[Transition(a, b, count) for (a, b), count in ranked[:top]],
    )


def ltv(curve: list[Row], arpu: float | None, cac: float | None) -> Ltv:
    """LT = expected active days per user: 1 (day 0) + the day-N retention rates, observed where known and
    from a least-squares fit rate = a + b·ln(N) beyond, up to LTV_HORIZON_DAYS or where the fit reaches 0.
    LTV = LT * ARPU (per active day); payback = first day whose cumulative expected revenue covers CAC."""
    if not curve:  # no cohort with an observable day 1: nothing to measure
        return Ltv(
            None, None, LTV_HORIZON_DAYS, None, arpu, cac, ltv=None, ltv_to_cac=None, payback_days=None
        )
    days = np.array([row["day"] for row in curve], dtype=float)
    rates = np.array([row["rate"] for row in curve], dtype=float)
    slope, intercept = np.polyfit(np.log(days), rates, 1) if len(curve) > 1 else (0.0, rates[0])
    horizon = np.arange(1, LTV_HORIZON_DAYS + 1, dtype=float)
    expected = np.clip(intercept + slope * np.log(horizon), 0.0, 1.0)
    expected[: len(rates)] = rates
    cumulative = 1.0 + np.cumsum(expected)  # expected active days by day N, day 0 included
    value = float(cumulative[-1]) * arpu if arpu is not None else None
    return Ltv(
        lt_days=float(cumulative[-1]),
        lt_days_observed=1.0 + float(rates.sum()),
        horizon_days=LTV_HORIZON_DAYS,
        fit=LtvFit(intercept=float(intercept), log_slope=float(slope)),
        arpu=arpu,
        cac=cac,
        ltv=value,
        ltv_to_cac=value / cac if value is not None and cac else None,
        payback_days=_payback(cumulative, arpu, cac),
    )


def _payback(cumulative: np.ndarray[Any, Any], arpu: float | None, cac: float | None) -> int | None:
    if arpu is None or cac is None or arpu <= 0:
        return None
    reached = np.nonzero(cumulative * arpu >= cac)[0]
    return int(reached[0]) + 1 if len(reached) else None
