"""Alerts on the wire (`omstream.alerts`) and as rows of the `alerts` table.

A record is a JSON object: the alert's fields, times as ISO 8601 in UTC with their offset, and
`raised_at`, the wall clock when it was first published. An alert has at most two records, `open`
(version 0) and `closed` (version 1), both with the same id and `raised_at`; the table keeps the
later one per id.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

import orjson

from stream.alerts.detector import Alert

_TIMES = ("window_start", "window_end", "event_time_at_raise")


@dataclasses.dataclass(frozen=True)
class AlertRecord:
    alert: Alert
    raised_at: float  # unix seconds, wall clock


@dataclasses.dataclass(frozen=True)
class AlertRow:
    """A row of the `alerts` table (clickhouse/migrations/0008_alerts.sql)."""

    alert_id: str
    metric: str
    direction: str
    status: str
    window_start: datetime.datetime
    window_end: datetime.datetime
    observed: float
    expected: float
    score: float
    raised_at: datetime.datetime
    event_time_at_raise: datetime.datetime
    version: int


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def _seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def encode_alert(record: AlertRecord) -> bytes:
    body = dataclasses.asdict(record.alert)
    for name in _TIMES:
        body[name] = _iso(body[name])
    body["raised_at"] = _iso(record.raised_at)
    return orjson.dumps(body)


def decode_alert(value: bytes) -> AlertRecord:
    """Raises ValueError (or a KeyError/TypeError, which callers treat alike) on a malformed record."""
    body = orjson.loads(value)
    raised_at = _seconds(body.pop("raised_at"))
    for name in _TIMES:
        body[name] = int(_seconds(body[name]))
    return AlertRecord(Alert(**body), raised_at)


def alert_rows(value: bytes, _headers: Sequence[tuple[str, bytes]] = ()) -> list[AlertRow]:
    """The table row of one record of the topic; none for a record that is not an alert."""
    try:
        record = decode_alert(value)
    except (ValueError, KeyError, TypeError):
        return []
    alert = record.alert

    def when(seconds: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC)

    return [
        AlertRow(
            alert.alert_id,
            alert.metric,
            alert.direction,
            alert.status,
            when(alert.window_start),
            when(alert.window_end),
            alert.observed,
            alert.expected,
            alert.score,
            when(record.raised_at),
            when(alert.event_time_at_raise),
            alert.version,
        )
    ]
