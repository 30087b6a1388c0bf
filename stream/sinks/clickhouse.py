"""Batched, idempotent writes into ClickHouse: raw events, dead letters and window results.

Every table deduplicates on its key (see `clickhouse/migrations`), so writing a batch again after a
crash or a replay leaves the stored result unchanged; that is what makes at-least-once Kafka
delivery exactly-once in storage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from clickhouse import query_rows
from stream.events import EVENT_COLUMNS, DeadLetter, EventFields
from stream.metrics import INSERT_ROWS, INSERT_SECONDS
from stream.windows import FUNNEL_TABLE, WINDOWS_TABLE, FunnelRow, WindowRow

RAW_EVENTS = "events_raw"  # the table events are written to; people query the view `events` (distinct)


def _observe_insert(table: str, started: float, rows: int) -> None:
    INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
    INSERT_ROWS.labels(table).observe(rows)


def _timed_insert(client: Client, table: str, columns: Sequence[str], data: list[list[Any]]) -> None:
    started = time.perf_counter()
    client.insert(table, data, column_names=list(columns), column_oriented=True)
    _observe_insert(table, started, len(data[0]))


def insert_events(client: Client, events: Sequence[EventFields]) -> None:
    if events:
        columns = [list(map(attrgetter(name), events)) for name in EVENT_COLUMNS]
        _timed_insert(client, RAW_EVENTS, EVENT_COLUMNS, columns)


def _json_rows(message: bytes) -> bytes:
    """A message's events as JSONEachRow rows: the objects of a batch, commas between them and all."""
    return message.rstrip()[1:-1] if message[:1] == b"[" else message


def insert_event_messages(client: Client, messages: Sequence[bytes], events: Sequence[EventFields]) -> None:
    """Messages whose every event is valid and in the window, stored as they are: ClickHouse parses JSON
    faster than Python hands it columns. `events` are the same events decoded, stored column by column
    when ClickHouse refuses the JSON (a repeated key, which the decoding reads as its last value)."""
    if not messages:
        return
    started = time.perf_counter()
    try:
        summary = client.raw_insert(
            RAW_EVENTS,
            EVENT_COLUMNS,
            insert_block=b"\n".join(map(_json_rows, messages)),
            fmt="JSONEachRow",
            settings={"input_format_skip_unknown_fields": 1},
        )
    except DatabaseError:
        insert_events(client, events)
        return
    _observe_insert(RAW_EVENTS, started, summary.written_rows)


def insert_rows(client: Client, table: str, rows: Sequence[Any]) -> None:
    """Dataclass rows, whose fields are the table's columns."""
    if not rows:
        return
    names = [field.name for field in fields(rows[0])]
    columns = [[getattr(row, name) for row in rows] for name in names]
    _timed_insert(client, table, names, columns)


def insert_dead_letters(client: Client, rows: Sequence[DeadLetter]) -> None:
    insert_rows(client, "dead_letters", rows)


def insert_window_rows(client: Client, windows: Sequence[WindowRow], funnels: Sequence[FunnelRow]) -> None:
    insert_rows(client, WINDOWS_TABLE, windows)
    insert_rows(client, FUNNEL_TABLE, funnels)


def stored_minute_rows(client: Client, span: int) -> list[WindowRow]:
    """Each partition's latest stored minute row over the last `span` seconds of event time stored."""
    return [
        WindowRow("minute", int(row.pop("window_start").timestamp()), **row)
        for row in query_rows(client, "realtime_minute_rows", span=span)
    ]
