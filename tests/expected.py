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
