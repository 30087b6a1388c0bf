"""The stored anomaly alerts as `omstream alerts` and the report list them: newest first, times in ISO 8601
with the offset of the configured time zone."""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

from clickhouse_connect.driver.client import Client

from clickhouse import query_rows

FIELDS = ("metric", "direction", "status", "window_start", "window_end", "observed", "expected", "score")
TIMES = ("window_start", "window_end", "raised_at", "event_time_at_raise")
_EVER = (
    datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(2105, 1, 1, tzinfo=datetime.UTC),
)


def list_alerts(
    client: Client,
    timezone: str,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    status: str = "",
    limit: int = 10_000,
) -> list[dict[str, Any]]:
    """Alerts whose minutes overlap [since, until) (naive times are in `timezone`), newest first."""
    zone = ZoneInfo(timezone)

    def bound(moment: datetime.datetime | None, default: datetime.datetime) -> datetime.datetime:
        moment = default if moment is None else moment
        return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(datetime.UTC)

    rows = query_rows(
        client,
        "alerts",
        since=bound(since, _EVER[0]).replace(tzinfo=None),
        until=bound(until, _EVER[1]).replace(tzinfo=None),
        status=status,
        limit=limit,
    )
    return [_row(row, zone) for row in rows]


def _row(row: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    def iso(moment: datetime.datetime) -> str:
        aware = moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
        return aware.astimezone(zone).isoformat()

    shown = {name: row[name] for name in (*FIELDS, "raised_at", "event_time_at_raise", "alert_id")}
    return {name: iso(value) if name in TIMES else value for name, value in shown.items()}


def alert_line(alert: dict[str, Any]) -> str:
    return (
        f"{alert['window_start']} .. {alert['window_end']}  {alert['metric']} {alert['direction']} "
        f"({alert['status']}): {alert['observed']:.4g} per minute, {alert['expected']:.4g} expected, "
        f"score {alert['score']:.1f}; raised at {alert['raised_at']} "
        f"(event time {alert['event_time_at_raise']})"
    )


def alert_table(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns a table of alerts shows."""
    return [{name: alert[name] for name in FIELDS} for alert in alerts]
