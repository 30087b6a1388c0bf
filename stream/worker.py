"""The stream worker: Faust agents that store raw events and dead letters in ClickHouse.

In embedded mode this process is the only one that opens chDB; everything else reaches it via Kafka.
Each agent takes a batch, writes it to ClickHouse, and only then lets Faust acknowledge (and so
commit) its offsets: a crash re-delivers the batch, and the idempotent tables absorb the repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import faust
import orjson
from clickhouse_connect.driver.client import Client
from faust.types import EventT

from omstream.settings import Settings
from stream import metrics
from stream.app import create_app, dlq_topic, events_topic
from stream.events import Event, Rejected, decode_message, encode_rejected, split
from stream.sinks.clickhouse import DeadLetterRow, insert_dead_letters, insert_events

log = logging.getLogger(__name__)


class Sink:
    """Serialises ClickHouse writes: one client, used from a worker thread so the loop keeps fetching."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = asyncio.Lock()

    async def events(self, events: Sequence[Event]) -> None:
        async with self._lock:
            await asyncio.to_thread(insert_events, self.client, events)

    async def dead_letters(self, rows: Sequence[DeadLetterRow]) -> None:
        async with self._lock:
            await asyncio.to_thread(insert_dead_letters, self.client, rows)


def _dead_letter_row(event: EventT) -> DeadLetterRow:
    message = event.message
    try:
        body = orjson.loads(event.value)
        fields = {name: str(body[name]) for name in ("reason", "source", "detail", "payload")}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        # A dead letter is never dropped, even one written by a foreign producer in another shape.
        raw = bytes(event.value).decode(errors="replace")
        fields = {
            "reason": "malformed",
            "source": "unknown",
            "detail": "unreadable dead letter",
            "payload": raw,
        }
    return DeadLetterRow(partition=message.partition, offset=message.offset, **fields)


def build_worker_app(settings: Settings, bootstrap: str, client: Client) -> faust.App:
    app = create_app(settings, bootstrap)
    sink = Sink(client)
    events_in = events_topic(app, settings)
    dead_letters = dlq_topic(app, settings)
    accept_range = settings.accept_range

    async def store_events(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take(settings.sink_batch_messages, within=settings.sink_batch_seconds):
            results = [result for value in batch for result in decode_message(value, accept_range)]
            metrics.MESSAGES_IN.inc(len(batch))
            events, rejected = split(results)
            metrics.EVENTS_IN.inc(len(events))
            await _dead_letter(dead_letters, rejected)
            await sink.events(events)
            metrics.EVENTS_STORED.inc(len(events))

    async def store_dead_letters(stream: faust.StreamT[bytes]) -> None:
        batches = stream.take_events(settings.sink_batch_messages, within=settings.sink_batch_seconds)  # type: ignore[attr-defined]
        async for batch in batches:
            rows = [_dead_letter_row(event) for event in batch]
            await sink.dead_letters(rows)
            metrics.DEAD_LETTERS_STORED.inc(len(rows))

    app.agent(events_in, name="store_events")(store_events)
    app.agent(dead_letters, name="store_dead_letters")(store_dead_letters)
    return app


async def _dead_letter(topic: faust.TopicT, rejected: Sequence[Rejected]) -> None:
    for item in rejected:
        metrics.DEAD_LETTERS.labels(item.reason.value).inc()
        await topic.send(value=encode_rejected(item, "stream"))


def run_worker(settings: Settings, bootstrap: str, client: Client) -> None:
    """Run the worker until SIGTERM/SIGINT (Faust handles both and stops cleanly)."""
    app = build_worker_app(settings, bootstrap, client)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
