"""Batched, idempotent writes into ClickHouse: raw events, dead letters and window results.

Every table deduplicates on its key (see `clickhouse/migrations`), so writing a batch again after a
crash or a replay leaves the stored result unchanged; that is what makes at-least-once Kafka
delivery exactly-once in storage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from clickhouse_connect.driver.client import Client

from stream.metrics import INSERT_ROWS, INSERT_SECONDS
from stream.windows import FunnelRow, WindowRow

EVENT_COLUMNS = ("user_id", "item_id", "category_id", "behavior", "ts", "channel", "device_id", "event_id")


@dataclass(frozen=True)
class DeadLetterRow:
    origin: str
    reason: str
    source: str
    detail: str
    payload: str


def _timed_insert(client: Client, table: str, columns: Sequence[str], data: list[list[Any]]) -> None:
    started = time.perf_counter()
    client.insert(table, data, column_names=list(columns), column_oriented=True)
    INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
    INSERT_ROWS.labels(table).observe(len(data[0]))


def insert_events(client: Client, events: Sequence[Mapping[str, Any]]) -> None:
    """`events`: fields of valid events (`stream.events.event_fields`); absent optional ones are ''."""
    if events:
        columns = [[event.get(name, "") for event in events] for name in EVENT_COLUMNS]
        _timed_insert(client, "events", EVENT_COLUMNS, columns)


def _insert_dataclasses(client: Client, table: str, rows: Sequence[Any]) -> None:
    if not rows:
        return
    names = [field.name for field in fields(rows[0])]
    columns = [[getattr(row, name) for row in rows] for name in names]
    _timed_insert(client, table, names, columns)


def insert_dead_letters(client: Client, rows: Sequence[DeadLetterRow]) -> None:
    _insert_dataclasses(client, "dead_letters", rows)


def insert_window_rows(client: Client, windows: Sequence[WindowRow], funnels: Sequence[FunnelRow]) -> None:
    _insert_dataclasses(client, "realtime_windows", windows)
    _insert_dataclasses(client, "realtime_funnel", funnels)


def insert_audit_rows(client: Client, rows: Sequence[Any]) -> None:
    """`rows`: `control.audit.AuditRow`s, the control plane's results."""
    _insert_dataclasses(client, "ops_audit", rows)
