"""Independent computations over Taobao CSV input, in plain Python, to check what the pipeline stored."""

from __future__ import annotations

import gzip
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

BEHAVIORS = ("pv", "fav", "cart", "buy")
Row = tuple[int, int, int, str, int]


def distinct_valid_rows(path: Path, accept: tuple[int, int]) -> set[Row]:
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


def daily_pv_uv(rows: set[Row], timezone: str) -> list[dict[str, object]]:
    zone = ZoneInfo(timezone)
    pv: Counter[str] = Counter()
    users: dict[str, set[int]] = defaultdict(set)
    for user, _, _, behavior, ts in rows:
        day = datetime.fromtimestamp(ts, zone).date().isoformat()
        users[day].add(user)
        pv[day] += behavior == "pv"
    return [{"date": day, "pv": pv[day], "uv": len(users[day])} for day in sorted(users)]


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
            level, last_pv, chain_start = 0, None, None
            for ts, kind in sorted(events):
                if kind == 0:
                    last_pv, level = ts, max(level, 1)
                elif kind == 1 and last_pv is not None and ts - last_pv <= conversion:
                    chain_start, level = max(chain_start or last_pv, last_pv), max(level, 2)
                elif kind == 2 and chain_start is not None and ts - chain_start <= conversion:
                    level = 3
            for index in range(level):
                reached[index] += 1
        result.append(
            {"date": day, "pv_users": reached[0], "cart_users": reached[1], "buy_users": reached[2]}
        )
    return result
