"""The sink: the one process that writes ClickHouse (in embedded mode, the only one that opens chDB).

It consumes, in its own consumer group, the events topic (raw events), the dead-letter topic, the
workers' window results and the control plane's results (the `ops_audit` table), writes each take
in one batch per table, and only then lets Faust acknowledge it. Every table deduplicates on its
key, so what a crash makes it write twice is stored once. After each write it publishes how far
each source is stored (see `stream.processed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

import faust
from clickhouse_connect.driver.client import Client
from faust.types import EventT

from stream import metrics
from stream.alerts.service import AlertsConfig, detect_alerts_in
from stream.app import FaustConfig, Takes, create_app, raw_topic
from stream.bulk import Bulk, bulk_buffer, deliver_in_bulk
from stream.events import (
    AcceptRange,
    DeadLetter,
    EventFields,
    Rejected,
    RejectReason,
    decode_fields,
    decode_singles,
    unreadable,
    valid_events,
)
from stream.kafka import Partitioner
from stream.processed import Stage, encode_processed
from stream.results import decode_results
from stream.sinks.clickhouse import (
    insert_dead_letters,
    insert_event_messages,
    insert_events,
    insert_rows,
    insert_window_rows,
    stored_minute_rows,
)
from stream.topics import Topics
from stream.windows import WindowRow

Headers = Sequence[tuple[str, bytes]]
_USER = attrgetter("user_id")


@dataclass(frozen=True)
class TableFeed:
    """A topic the sink stores into a table for another component (the control plane's results into
    the audit table): `rows` reads one message (its value and headers) into the table's rows, and
    none from a message that is not one of its records."""

    topic: str
    table: str
    stage: Stage
    rows: Callable[[bytes, Headers], Sequence[Any]]


@dataclass(frozen=True)
class SinkConfig:
    faust: FaustConfig
    topics: Topics
    partitions: int  # of the events topic: an event counts as stored on its user's partition
    accept_range: AcceptRange  # accepted event times
    takes: Takes
    feeds: tuple[TableFeed, ...] = ()
    alerts: AlertsConfig | None = None  # the alert detector, run in the sink's process


class ClickHouseWriter:
    """Serialises ClickHouse calls: one client, used from a thread so the loop keeps fetching."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = asyncio.Lock()

    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(call, self.client, *args)


def last_offsets(batch: Sequence[EventT]) -> dict[int, int]:
    return {event.message.partition: event.message.offset for event in batch}


class ClickHouseSink:
    """Stores each take of a topic in its table, in one batch, then publishes how far the topic is stored."""

    def __init__(self, config: SinkConfig, writer: ClickHouseWriter, processed: faust.TopicT) -> None:
        self.config = config
        self.topics = config.topics
        self.writer = writer
        self.processed = processed
        self.partitioner = Partitioner(config.partitions)

    async def store_events(self, batch: Sequence[EventT]) -> None:
        # Bad input is the workers' to dead-letter (they see every message too); here it is skipped.
        accept_range = self.config.accept_range
        valid: list[bytes] = []
        decoded: list[EventFields] = []
        repaired: list[EventFields] = []
        stored = 0
        for event in batch:
            bulk, partition = cast(Bulk, event.value), event.message.partition
            singles = decode_singles(bulk.values, accept_range)
            if singles is not None:
                valid += cast(list[bytes], bulk.values)
                decoded += singles
                stored += self._on_partition(singles, partition)
                continue
            for value in bulk.values:
                fields = decode_fields(value, accept_range)
                if fields is not None and value is not None:
                    valid.append(value)
                    decoded += fields
                else:  # some events are bad: the model path keeps the good ones
                    fields = list(valid_events(value, accept_range))
                    repaired += fields
                stored += self._on_partition(fields, partition)
        await self.writer.run(insert_event_messages, valid, decoded)
        await self.writer.run(insert_events, repaired)
        metrics.EVENTS_STORED.inc(stored)
        await self._published(Stage.RAW, self.topics.events, last_offsets(batch))

    def _on_partition(self, events: Sequence[EventFields], partition: int) -> int:
        """How many of `events` are on their user's partition. A misrouted event is stored where it
        was found and again where the worker re-routes it; the table keeps one row, and the stored
        events metric counts it once, at its re-routed copy."""
        user_ids = list(map(_USER, events))
        if self.partitioner.all_to(user_ids, partition):
            return len(user_ids)
        return sum(self.partitioner(user_id) == partition for user_id in user_ids)

    async def store_dead_letters(self, batch: Sequence[EventT]) -> None:
        topic = self.topics.dead_letters
        letters = [DeadLetter.decode(event.value, _position(topic, event)) for event in batch]
        await self.writer.run(insert_dead_letters, letters)
        metrics.DEAD_LETTERS_STORED.inc(len(letters))
        await self._published(Stage.DEAD_LETTERS, topic, last_offsets(batch))

    async def store_windows(self, batch: Sequence[EventT]) -> None:
        decoded, letters = [], []
        for event in batch:
            try:
                decoded.append(decode_results(event.value))
            except (ValueError, KeyError, TypeError, AttributeError) as error:  # not a worker's record
                letter = unreadable(event.value) or Rejected(
                    RejectReason.MALFORMED,
                    f"not window results: {error!r}",
                    bytes(event.value).decode(errors="replace"),
                )
                letters.append(DeadLetter.of(letter, "sink", _position(self.topics.windows, event)))
                metrics.DEAD_LETTERS.labels(letter.reason.value).inc()
        await self.writer.run(insert_dead_letters, letters)
        windows = [row for result in decoded for row in result.windows]
        funnels = [row for result in decoded for row in result.funnels]
        await self.writer.run(insert_window_rows, windows, funnels)
        positions: dict[int, int] = {}
        for result in decoded:
            positions.update(result.positions)
        await self._published(Stage.WINDOWS, self.topics.events, positions)

    async def store_feed(self, feed: TableFeed, batch: Sequence[EventT]) -> None:
        rows = [row for event in batch for row in feed.rows(event.value, _headers(event))]
        await self.writer.run(insert_rows, feed.table, rows)
        await self._published(feed.stage, feed.topic, last_offsets(batch))

    async def _published(self, stage: Stage, topic: str, positions: dict[int, int]) -> None:
        for partition, offset in positions.items():
            await self.processed.send(value=encode_processed(stage, topic, partition, offset))


def build_sink_app(config: SinkConfig, client: Client) -> faust.App:
    app = create_app(config.faust)
    deliver_in_bulk(app, [config.topics.events], config.faust.fetch_wait_ms)
    topics, takes = config.topics, config.takes
    writer = ClickHouseWriter(client)
    sink = ClickHouseSink(config, writer, raw_topic(app, topics.processed))

    async def store_events(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(takes.fetches, within=takes.seconds):  # type: ignore[attr-defined]
            await sink.store_events(batch)

    async def store_dead_letters(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(takes.messages, within=takes.seconds):  # type: ignore[attr-defined]
            await sink.store_dead_letters(batch)

    async def store_windows(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(takes.messages, within=takes.seconds):  # type: ignore[attr-defined]
            await sink.store_windows(batch)

    def store_feed(feed: TableFeed) -> Callable[[faust.StreamT[bytes]], Any]:
        async def store(stream: faust.StreamT[bytes]) -> None:
            async for batch in stream.take_events(takes.messages, within=takes.seconds):  # type: ignore[attr-defined]
                await sink.store_feed(feed, batch)

        return store

    events = raw_topic(app, topics.events, buffered=bulk_buffer(takes.fetches))
    app.agent(events, name="store_events")(store_events)
    app.agent(raw_topic(app, topics.dead_letters), name="store_dead_letters")(store_dead_letters)
    app.agent(raw_topic(app, topics.windows), name="store_windows")(store_windows)
    for feed in config.feeds:
        app.agent(raw_topic(app, feed.topic), name=f"store_{feed.table}")(store_feed(feed))
    if config.alerts is not None:

        async def stored_minutes(span: int) -> list[WindowRow]:
            return cast(list[WindowRow], await writer.run(stored_minute_rows, span))

        detect_alerts_in(app, config.alerts, stored_minutes)
    return app


def _headers(event: EventT) -> Headers:
    headers = event.message.headers or ()
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def _position(topic: str, event: EventT) -> str:
    return f"{topic}/{event.message.partition}/{event.message.offset}"
