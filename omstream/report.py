"""`omstream report`: the analyses of `clickhouse/queries`, as one JSON-ready dict or terminal tables."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from clickhouse import query_rows
from omstream.settings import Settings
from stream.events import BEHAVIORS


def build_report(client: Client, settings: Settings) -> dict[str, Any]:
    totals = {row["behavior"]: row["events"] for row in query_rows(client, "behavior_totals")}
    return {
        "timezone": settings.timezone,
        "behavior_totals": {behavior: int(totals.get(behavior, 0)) for behavior in BEHAVIORS},
        "daily": query_rows(client, "daily_activity", tz=settings.timezone),
        "dead_letters": query_rows(client, "dead_letters_by_reason"),
        "realtime": {
            "hourly": query_rows(client, "realtime_hourly", tz=settings.timezone),
            "funnel_daily": query_rows(client, "realtime_funnel_daily", tz=settings.timezone),
        },
    }


def _table(rows: list[dict[str, Any]], title: str) -> list[str]:
    if not rows:
        return [title, "  (none)"]
    headers = list(rows[0])
    widths = [max(len(str(h)), *(len(str(row[h])) for row in rows)) for h in headers]
    line = "  ".join(str(h).rjust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(str(row[h]).rjust(w) for h, w in zip(headers, widths, strict=True)) for row in rows]
    return [title, line, *body]


def render_text(report: dict[str, Any]) -> str:
    totals = [{"behavior": name, "events": count} for name, count in report["behavior_totals"].items()]
    sections = [
        _table(totals, "Behaviour totals"),
        _table(report["daily"], f"Daily activity ({report['timezone']})"),
        _table(report["dead_letters"], "Rejected input (dead letters)"),
    ]
    return "\n\n".join("\n".join(section) for section in sections)
