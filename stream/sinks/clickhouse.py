"""Batched, idempotent writes into ClickHouse: raw events and dead letters.

Both tables deduplicate on their key (see `clickhouse/migrations`), so writing a batch again after a
crash or a replay leaves the stored result unchanged; that is what makes at-least-once Kafka
delivery exactly-once in storage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from stream.events import Event
from stream.metrics import INSERT_ROWS, INSERT_SECONDS

EVENT_COLUMNS = ("user_id", "item_id", "category_id", "behavior", "ts", "channel", "device_id", "event_id")
DEAD_LETTER_COLUMNS = ("partition", "offset", "reason", "source", "detail", "payload")


@dataclass(frozen=True)
class DeadLetterRow:
    partition: int
    offset: int
    reason: str
    source: str
    detail: str
    payload: str


def _timed_insert(client: Client, table: str, columns: Sequence[str], data: list[list[object]]) -> None:
    started = time.perf_counter()
    client.insert(table, data, column_names=list(columns), column_oriented=True)
    INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
    INSERT_ROWS.labels(table).observe(len(data[0]))


def insert_events(client: Client, events: Sequence[Event]) -> None:
    if events:
        columns = [[getattr(event, name) for event in events] for name in EVENT_COLUMNS]
        _timed_insert(client, "events", EVENT_COLUMNS, columns)


def insert_dead_letters(client: Client, rows: Sequence[DeadLetterRow]) -> None:
    if rows:
        columns = [[getattr(row, name) for row in rows] for name in DEAD_LETTER_COLUMNS]
        _timed_insert(client, "dead_letters", DEAD_LETTER_COLUMNS, columns)
