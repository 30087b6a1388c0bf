"""The sink: the one process that writes ClickHouse (in embedded mode, the only one that opens chDB).

It consumes, in its own consumer group, the events topic (raw events), the dead-letter topic, the
workers' window results and the control plane's results (the `ops_audit` table), writes each take
in one batch per table, and only then lets Faust acknowledge it. Every table deduplicates on its
key, so what a crash makes it write twice is stored once. After each write it publishes how far
each source is stored (see `stream.processed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import faust
import orjson
from clickhouse_connect.driver.client import Client
from faust.types import EventT

from control.audit import AuditRow, audit_rows
from control.commands import CommandResult
from omstream.settings import Settings
from stream import metrics
from stream.app import create_app, raw_topic
from stream.events import EventFields, decode_fields, valid_events
from stream.processed import encode_processed
from stream.results import decode_results
from stream.sinks.clickhouse import (
    DeadLetterRow,
    insert_audit_rows,
    insert_dead_letters,
    insert_event_messages,
    insert_events,
    insert_window_rows,
)

log = logging.getLogger("omstream.sink")


class ClickHouseWriter:
    """Serialises ClickHouse writes: one client, used from a thread so the loop keeps fetching."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = asyncio.Lock()

    async def run(self, write: Callable[..., Any], *args: Any) -> None:
        async with self._lock:
            await asyncio.to_thread(write, self.client, *args)


def dead_letter_row(event: EventT, topic: str) -> DeadLetterRow:
    message = event.message
    position = f"{topic}/{message.partition}/{message.offset}"
    try:
        body = orjson.loads(event.value)
        fields = {name: str(body[name]) for name in ("reason", "source", "detail", "payload")}
        origin = str(body.get("origin") or position)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        # A dead letter is never dropped, even one written by a foreign producer in another shape.
        raw = bytes(event.value).decode(errors="replace")
        fields = {
            "reason": "malformed",
            "source": "unknown",
            "detail": "unreadable dead letter",
            "payload": raw,
        }
        origin = position
    return DeadLetterRow(origin=origin, **fields)


def _audit_rows(value: bytes) -> list[AuditRow]:
    try:
        return audit_rows(CommandResult.model_validate_json(value))
    except ValueError:
        # Only the control service writes this topic; anything else on it is not an audit record.
        log.warning("skipped a message on the results topic that is not a command result")
        return []


def last_offsets(batch: Sequence[EventT]) -> dict[int, int]:
    return {event.message.partition: event.message.offset for event in batch}


def build_sink_app(settings: Settings, bootstrap: str, client: Client) -> faust.App:
    app = create_app(settings, settings.sink_group, bootstrap)
    writer = ClickHouseWriter(client)
    events, dead_letters, results = (
        raw_topic(app, name) for name in (settings.events_topic, settings.dlq_topic, settings.windows_topic)
    )
    processed = raw_topic(app, settings.processed_topic)
    accept_range = settings.accept_range

    async def published(stage: str, topic: str, positions: dict[int, int]) -> None:
        for partition, offset in positions.items():
            await processed.send(value=encode_processed(stage, topic, partition, offset))

    async def store_events(stream: faust.StreamT[bytes]) -> None:
        # Bad input is the workers' to dead-letter (they see every message too); here it is skipped.
        async for batch in stream.take_events(settings.take_messages, within=settings.take_seconds):  # type: ignore[attr-defined]
            valid: list[bytes] = []
            decoded: list[EventFields] = []
            repaired: list[EventFields] = []
            for event in batch:
                fields = decode_fields(event.value, accept_range)
                if fields is not None:
                    valid.append(event.value)
                    decoded += fields
                else:  # some events are bad: the model path keeps the good ones
                    repaired += valid_events(event.value, accept_range)
            await writer.run(insert_event_messages, valid, decoded)
            await writer.run(insert_events, repaired)
            metrics.EVENTS_STORED.inc(len(decoded) + len(repaired))
            await published("raw", settings.events_topic, last_offsets(batch))

    async def store_dead_letters(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(settings.take_messages, within=settings.take_seconds):  # type: ignore[attr-defined]
            rows = [dead_letter_row(event, settings.dlq_topic) for event in batch]
            await writer.run(insert_dead_letters, rows)
            metrics.DEAD_LETTERS_STORED.inc(len(rows))
            await published("dead_letters", settings.dlq_topic, last_offsets(batch))

    async def store_windows(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take(settings.take_messages, within=settings.take_seconds):
            decoded = [decode_results(value) for value in batch]
            windows = [row for result in decoded for row in result.windows]
            funnels = [row for result in decoded for row in result.funnels]
            await writer.run(insert_window_rows, windows, funnels)
            positions: dict[int, int] = {}
            for result in decoded:
                positions.update(result.positions)
            await published("windows", settings.events_topic, positions)

    async def store_audit(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(settings.take_messages, within=settings.take_seconds):  # type: ignore[attr-defined]
            rows = [row for event in batch for row in _audit_rows(event.value)]
            await writer.run(insert_audit_rows, rows)
            await published("audit", settings.ops_results_topic, last_offsets(batch))

    app.agent(events, name="store_events")(store_events)
    app.agent(raw_topic(app, settings.ops_results_topic), name="store_audit")(store_audit)
    app.agent(dead_letters, name="store_dead_letters")(store_dead_letters)
    app.agent(results, name="store_windows")(store_windows)
    return app
