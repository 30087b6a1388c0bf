"""Independent computations over Taobao CSV input, in plain Python, to check what the pipeline stored."""

from __future__ import annotations

import bisect
import gzip
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from stream.events import AcceptRange, FixedRange
from stream.sources.taobao import TAOBAO_END, TAOBAO_START

if TYPE_CHECKING:
    from report import Report

BEHAVIORS = ("pv", "fav", "cart", "buy")
TAOBAO_WINDOW = FixedRange(TAOBAO_START, TAOBAO_END)  # the generated data's window, and the real file's
Row = tuple[int, int, int, str, int]


def distinct_valid_rows(path: Path, accept_range: AcceptRange) -> set[Row]:
    accept = accept_range.bounds()
    opener = gzip.open if path.suffix == ".gz" else open
    rows: set[Row] = set()
    with opener(path, "rt") as lines:
        for line in lines:
            parts = line.strip().split(",")
            if len(parts) != 5 or parts[3] not in BEHAVIORS:
                continue
            try:
                user, item, category, ts = (int(parts[i]) for i in (0, 1, 2, 4))
            except ValueError:
                continue
            if accept[0] <= ts < accept[1]:
                rows.add((user, item, category, parts[3], ts))
    return rows


def behavior_totals(rows: set[Row]) -> dict[str, int]:
    counts = Counter(row[3] for row in rows)
    return {behavior: counts.get(behavior, 0) for behavior in BEHAVIORS}


def _local(ts: int, timezone: str) -> datetime:
    return datetime.fromtimestamp(ts, ZoneInfo(timezone))


def hourly_activity(rows: set[Row], timezone: str) -> list[dict[str, object]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[_local(row[4], timezone).strftime("%Y-%m-%d %H:00")].append(row)
    result = []
    for hour in sorted(groups):
        counts = Counter(row[3] for row in groups[hour])
        uv = len({row[0] for row in groups[hour]})
        result.append(
            {
                "window_start": hour,
                "pv": counts["pv"],
                "uv": uv,
                **{b: counts[b] for b in ("cart", "fav", "buy")},
            }
        )
    return result


def funnel_daily(rows: set[Row], timezone: str, conversion: int = 86_400) -> list[dict[str, object]]:
    """Users per local day reaching pv, then cart (≤ conversion after a pv), then buy (≤ conversion after
    that pv)."""
    step = {"pv": 0, "cart": 1, "buy": 2}
    by_day_user: dict[str, dict[int, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for user, _, _, behavior, ts in rows:
        if behavior in step:
            by_day_user[_local(ts, timezone).date().isoformat()][user].append((ts, step[behavior]))
    result = []
    for day in sorted(by_day_user):
        reached = [0, 0, 0]
        for events in by_day_user[day].values():
            for index in range(_funnel_level(events, conversion)):
                reached[index] += 1
        result.append(
            {"date": day, "pv_users": reached[0], "cart_users": reached[1], "buy_users": reached[2]}
        )
    return result


def _funnel_level(events: list[tuple[int, int]], conversion: int) -> int:
    """How far one user got: 1 with a pv, 2 with a cart within `conversion` of a pv, 3 with a buy within
    `conversion` of that chain's pv (events as (ts, step 0/1/2), in any order)."""
    level, last_pv, chain_start = 0, None, None
    for ts, kind in sorted(events):
        if kind == 0:
            last_pv, level = ts, max(level, 1)
        elif kind == 1 and last_pv is not None and ts - last_pv <= conversion:
            chain_start, level = max(chain_start or last_pv, last_pv), max(level, 2)
        elif kind == 2 and chain_start is not None and ts - chain_start <= conversion:
            level = 3
    return level


# The report's acceptance figures, recomputed in plain Python from the same distinct rows.


def _local_day(ts: int, timezone: str) -> date:
    return _local(ts, timezone).date()


def daily_activity(rows: set[Row], timezone: str) -> list[dict[str, object]]:
    """Per local day: pv, uv, pv/uv, users first active that day, buyers and buys."""
    days: dict[int, set[date]] = defaultdict(set)
    pv: Counter[date] = Counter()
    buys: Counter[date] = Counter()
    users: dict[date, set[int]] = defaultdict(set)
    buyers: dict[date, set[int]] = defaultdict(set)
    for user, _, _, behavior, ts in rows:
        day = _local_day(ts, timezone)
        days[user].add(day)
        users[day].add(user)
        pv[day] += behavior == "pv"
        if behavior == "buy":
            buys[day] += 1
            buyers[day].add(user)
    first_days = Counter(min(active) for active in days.values())
    return [
        {
            "date": day.isoformat(),
            "pv": pv[day],
            "uv": len(users[day]),
            "pv_per_uv": pv[day] / len(users[day]),
            "new_users": first_days[day],
            "buyers": len(buyers[day]),
            "buys": buys[day],
        }
        for day in sorted(users)
    ]


def hour_of_day_activity(rows: set[Row], timezone: str) -> list[dict[str, object]]:
    """Per local hour of day (all days together): pv, uv, buyers, pay rate and behaviour counts."""
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    users: dict[int, set[int]] = defaultdict(set)
    buyers: dict[int, set[int]] = defaultdict(set)
    for user, _, _, behavior, ts in rows:
        hour = _local(ts, timezone).hour
        counts[hour][behavior] += 1
        users[hour].add(user)
        if behavior == "buy":
            buyers[hour].add(user)
    return [
        {
            "hour": hour,
            "pv": counts[hour]["pv"],
            "uv": len(users[hour]),
            "buyers": len(buyers[hour]),
            "pay_rate": len(buyers[hour]) / len(users[hour]),
            **{behavior: counts[hour][behavior] for behavior in ("fav", "cart", "buy")},
        }
        for hour in sorted(users)
    ]


def purchase_frequency(rows: set[Row]) -> dict[str, object]:
    per_buyer = Counter(row[0] for row in rows if row[3] == "buy")
    distribution = Counter(per_buyer.values())
    return {
        "buyers": len(per_buyer),
        "buys": sum(per_buyer.values()),
        "buys_per_buyer": sum(per_buyer.values()) / len(per_buyer),
        "distribution": [{"buys": buys, "buyers": distribution[buys]} for buys in sorted(distribution)],
    }


def category_pareto(rows: set[Row]) -> dict[str, int]:
    """Categories with a buy, and the fewest top sellers whose buys reach 80 % of all buys."""
    sales = sorted(Counter(row[2] for row in rows if row[3] == "buy").values(), reverse=True)
    total, running = sum(sales), 0
    for rank, buys in enumerate(sales, 1):
        running += buys
        if running * 5 >= total * 4:
            return {"categories_with_sales": len(sales), "categories_for_80pct": rank}
    return {"categories_with_sales": 0, "categories_for_80pct": 0}


def retention_d1(rows: set[Row], timezone: str) -> list[dict[str, object]]:
    """Per cohort (first active local day): users and the share active the next day (None: not observable)."""
    days: dict[int, set[date]] = defaultdict(set)
    for user, _, _, _, ts in rows:
        days[user].add(_local_day(ts, timezone))
    last = max(max(active) for active in days.values())
    cohorts: dict[date, list[set[date]]] = defaultdict(list)
    for active in days.values():
        cohorts[min(active)].append(active)
    result = []
    for cohort in sorted(cohorts):
        members = cohorts[cohort]
        next_day = cohort + timedelta(days=1)
        retained = sum(next_day in active for active in members)
        d1 = retained / len(members) if next_day <= last else None
        result.append({"cohort_date": cohort.isoformat(), "users": len(members), "d1": d1})
    return result


def repurchase_rate(rows: set[Row], timezone: str) -> dict[str, object]:
    buy_days: dict[int, set[date]] = defaultdict(set)
    for user, _, _, behavior, ts in rows:
        if behavior == "buy":
            buy_days[user].add(_local_day(ts, timezone))
    repeat = sum(len(days) >= 2 for days in buy_days.values())
    return {"buyers": len(buy_days), "repurchasers": repeat, "repurchase_rate": repeat / len(buy_days)}


def report_figures(rows: set[Row], timezone: str) -> dict[str, object]:
    """The figures the report must equal, keyed as `figures_of` picks them from the report's JSON."""
    return {
        "behavior_totals": behavior_totals(rows),
        "daily": daily_activity(rows, timezone),
        "hourly": hour_of_day_activity(rows, timezone),
        "purchase_frequency": purchase_frequency(rows),
        "category_pareto": category_pareto(rows),
        "retention": retention_d1(rows, timezone),
        "repurchase_rate": repurchase_rate(rows, timezone),
    }


def figures_of(report: Report) -> dict[str, object]:
    """The report's acceptance figures: the sections compared whole, and the parts of the others that the
    independent computation covers (the Pareto summary, retention to day 1, the repurchase counts)."""

    def pick(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        return {key: row[key] for key in keys}

    return {
        "behavior_totals": report.behavior_totals,
        "daily": report.daily,
        "hourly": report.hourly,
        "purchase_frequency": asdict(report.purchase_frequency),
        "category_pareto": pick(
            asdict(report.category_pareto), ("categories_with_sales", "categories_for_80pct")
        ),
        "retention": [pick(row, ("cohort_date", "users", "d1")) for row in report.retention],
        "repurchase_rate": pick(
            asdict(report.repurchase_rate), ("buyers", "repurchasers", "repurchase_rate")
        ),
    }


# The stream layer's window rows, per source partition, recomputed from the distinct rows.

MINUTE, HOUR = 60, 3_600
WindowKey = tuple[str, int, int]  # kind, window start (Unix seconds), partition


def _window(kind: str, ts: int, timezone: str) -> tuple[int, int]:
    """The [start, end) of the tumbling window holding `ts`; days run from local midnight to midnight."""
    if kind == "day":
        day = _local_day(ts, timezone)
        zone = ZoneInfo(timezone)
        start, end = (datetime.combine(d, datetime.min.time(), zone) for d in (day, day + timedelta(days=1)))
        return int(start.timestamp()), int(end.timestamp())
    size = MINUTE if kind == "minute" else HOUR
    return ts - ts % size, ts - ts % size + size


def partition_windows(
    rows: set[Row], partition_of: Any, timezone: str, grace: int, conversion: int = 86_400
) -> tuple[dict[WindowKey, tuple[int, ...]], dict[WindowKey, tuple[int, ...]]]:
    """What each partition's windows hold once all rows are processed in time order, as the workers
    write them: (pv, fav, cart, buy, uv, final) per minute, hour, day and rolling-hour window, and
    (pv users, cart users, buy users, final) per hour and day funnel. A window is final when its end is
    at or before its partition's watermark (its newest event time) minus the grace; a rolling hour
    (every minute-aligned hour that holds an event) is written only once final."""
    by_partition: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        by_partition[partition_of(row[0])].append(row)
    windows: dict[WindowKey, tuple[int, ...]] = {}
    funnels: dict[WindowKey, tuple[int, ...]] = {}
    for partition, events in by_partition.items():
        events.sort(key=lambda row: row[4])
        close = events[-1][4] - grace
        for kind in ("minute", "hour", "day"):
            groups: dict[tuple[int, int], list[Row]] = defaultdict(list)
            for row in events:
                groups[_window(kind, row[4], timezone)].append(row)
            for (start, end), members in groups.items():
                final = int(end <= close)
                windows[(kind, start, partition)] = (*_counts(members), final)
                if kind != "minute":
                    funnels[(kind, start, partition)] = (*_funnel_counts(members, conversion), final)
        times = [row[4] for row in events]
        starts = {ts - ts % MINUTE - HOUR + MINUTE * step for ts in times for step in range(1, 61)}
        for start in sorted(start for start in starts if start + HOUR <= close):
            inside = events[bisect.bisect_left(times, start) : bisect.bisect_left(times, start + HOUR)]
            windows[("rolling_1h", start, partition)] = (*_counts(inside), 1)
    return windows, funnels


def _counts(rows: list[Row]) -> tuple[int, ...]:
    counts = Counter(row[3] for row in rows)
    return (*(counts[behavior] for behavior in BEHAVIORS), len({row[0] for row in rows}))


def _funnel_counts(rows: list[Row], conversion: int) -> tuple[int, ...]:
    step = {"pv": 0, "cart": 1, "buy": 2}
    per_user: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for user, _, _, behavior, ts in rows:
        if behavior in step:
            per_user[user].append((ts, step[behavior]))
    levels = [_funnel_level(events, conversion) for events in per_user.values()]
    return tuple(sum(level > reached for level in levels) for reached in range(3))
