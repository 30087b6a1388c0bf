"""The stream worker: one Faust agent that stores raw events and computes the real-time windows.

In embedded mode this process is the only one that opens chDB; everything else reaches it via Kafka.
Per take of messages the agent (1) dead-letters bad input, (2) writes the valid events to the raw
table, (3) updates each partition's windows and writes their rows and checkpoints, and only then
(4) acknowledges the messages that no open window needs any more. Kafka offsets therefore never
pass a checkpoint: a crash re-delivers what the windows need, and every table absorbs the repeats.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np
import orjson
from clickhouse_connect.driver.client import Client
from faust.types import TP, EventT

from omstream.settings import Settings
from stream import metrics
from stream.app import create_app, dlq_topic, events_topic
from stream.events import (
    BEHAVIORS,
    Event,
    Rejected,
    RejectReason,
    decode_message,
    encode_events,
    encode_rejected,
)
from stream.kafka import Partitioner
from stream.processed import encode_processed
from stream.sinks.clickhouse import (
    DeadLetterRow,
    insert_checkpoints,
    insert_dead_letters,
    insert_events,
    insert_window_rows,
    load_checkpoint,
)
from stream.windows import Batch, Bucketer, PartitionWindows

log = logging.getLogger(__name__)

_CODE = {behavior: code for code, behavior in enumerate(BEHAVIORS)}
_REROUTED = "rerouted:"  # event_id prefix of an event this worker moved to its user's partition


class Sink:
    """Serialises ClickHouse writes: one client, used from a thread so the loop keeps fetching."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = asyncio.Lock()

    async def run(self, write: Callable[..., Any], *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(write, self.client, *args)


class PartitionInput:
    """One partition's share of a take: its messages in offset order and their valid events."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.message_index: list[int] = []
        self.events: list[Event] = []

    def batch(self) -> Batch:
        def column(values: Sequence[int]) -> np.ndarray[Any, np.dtype[np.int64]]:
            return np.fromiter(values, dtype=np.int64, count=len(values))

        return Batch(
            self.offsets,
            column(self.message_index),
            column([event.user_id for event in self.events]),
            column([event.ts for event in self.events]),
            column([_CODE[event.behavior] for event in self.events]),
            column([event.item_id for event in self.events]),
            column([event.category_id for event in self.events]),
        )


@dataclass(frozen=True)
class Topics:
    events: faust.TopicT
    dead_letters: faust.TopicT
    processed: faust.TopicT


class WindowWorker:
    """The state of the partitions assigned to this worker, and the processing of one take."""

    def __init__(self, settings: Settings, sink: Sink, topics: Topics) -> None:
        self.settings = settings
        self.sink = sink
        self.topics = topics
        self.partitioner = Partitioner(settings.events_partitions)
        self.bucketer = Bucketer(settings.timezone)
        self.windows: dict[int, PartitionWindows] = {}
        self.held: dict[int, deque[EventT]] = defaultdict(deque)
        self.rerouted_seen: dict[int, dict[str, int]] = defaultdict(dict)
        self.last_flush = 0.0
        self._lock = asyncio.Lock()  # a take and the flush timer never interleave
        self._in_flight: list[Awaitable[Any]] = []  # dead letters and re-routed events being sent

    def revoke(self, partitions: set[int]) -> None:
        """Forget revoked partitions: their next owner rebuilds them from the checkpoint."""
        for partition in partitions:
            self.windows.pop(partition, None)
            self.held.pop(partition, None)
            self.rerouted_seen.pop(partition, None)

    async def process(self, batch: Sequence[EventT]) -> None:
        async with self._lock:
            inputs: dict[int, PartitionInput] = defaultdict(PartitionInput)
            stored: list[Event] = []
            for event in batch:
                self.held[event.message.partition].append(event)
                stored += await self._route(event, inputs[event.message.partition])
            metrics.MESSAGES_IN.inc(len(batch))
            metrics.EVENTS_IN.inc(len(stored))
            await self.sink.run(insert_events, stored)
            await self._add_to_windows(inputs)
            await self._write_windows(
                everything=time.monotonic() - self.last_flush >= self.settings.window_flush_seconds
            )
            metrics.EVENTS_STORED.inc(len(stored))

    async def flush(self) -> None:
        """Write every open window that changed (on a timer, so an idle stream is written out too)."""
        async with self._lock:
            if time.monotonic() - self.last_flush >= self.settings.window_flush_seconds:
                await self._write_windows(everything=True)

    async def _route(self, event: EventT, into: PartitionInput) -> list[Event]:
        """Decode one message; returns its valid events (all stored raw), windowing only those in place."""
        partition, offset = event.message.partition, event.message.offset
        into.offsets.append(offset)
        index = len(into.offsets) - 1
        valid: list[Event] = []
        for position, result in enumerate(decode_message(event.value, self.settings.accept_range)):
            origin = f"{self.settings.events_topic}/{partition}/{offset}/{position}"
            if isinstance(result, Rejected):
                await self._dead_letter(result, origin)
                continue
            valid.append(result)
            if self.partitioner(result.user_id) != partition:
                await self._reroute(result, origin)
            elif not self._seen_before(partition, result):
                into.events.append(result)
                into.message_index.append(index)
        return valid

    def _seen_before(self, partition: int, event: Event) -> bool:
        """A re-routed event can arrive twice (its sender re-processed after a crash): count it once."""
        if not event.event_id.startswith(_REROUTED):
            return False
        seen = self.rerouted_seen[partition]
        if event.event_id in seen:
            return True
        seen[event.event_id] = event.ts
        return False

    async def _reroute(self, event: Event, origin: str) -> None:
        metrics.REROUTED.inc()
        moved = event.model_copy(update={"event_id": _REROUTED + origin})
        self._in_flight.append(
            await self.topics.events.send(
                key=moved.key, value=encode_events([moved]), partition=self.partitioner(event.user_id)
            )
        )

    async def _dead_letter(self, rejected: Rejected, origin: str) -> None:
        metrics.DEAD_LETTERS.labels(rejected.reason.value).inc()
        self._in_flight.append(
            await self.topics.dead_letters.send(value=encode_rejected(rejected, "stream", origin))
        )

    async def _add_to_windows(self, inputs: dict[int, PartitionInput]) -> None:
        for partition, into in inputs.items():
            state = await self._state(partition)
            batch = into.batch()
            late = state.add(batch)
            for position in np.flatnonzero(late).tolist():
                late_event = into.events[position]
                origin = (
                    f"{self.settings.events_topic}/{partition}/{batch.offsets[batch.message_index[position]]}"
                )
                detail = f"ts={late_event.ts} behind watermark {state.watermark} by more than the grace"
                late_letter = Rejected(RejectReason.LATE, detail, encode_events([late_event]).decode())
                await self._dead_letter(late_letter, f"{origin}/late/{position}")

    async def _write_windows(self, everything: bool) -> None:
        windows, funnels, checkpoints = [], [], []
        for partition, state in self.windows.items():
            rows, funnel_rows = state.collect(everything)
            windows += rows
            funnels += funnel_rows
            checkpoints.append(state.checkpoint())
            self._observe(partition, state)
        await self.sink.run(insert_window_rows, windows, funnels)
        await self.sink.run(insert_checkpoints, self.settings.events_topic, checkpoints)
        for row in windows:
            metrics.WINDOW_ROWS.labels(row.kind, str(row.final)).inc()
        for checkpoint in checkpoints:
            self._release(checkpoint.partition, checkpoint.offset)
        if everything:  # every change is in ClickHouse or on Kafka now: tell whoever waits for it
            self.last_flush = time.monotonic()
            await asyncio.gather(*self._in_flight)
            self._in_flight.clear()
            for partition, state in self.windows.items():
                await self.topics.processed.send(
                    value=encode_processed(self.settings.events_topic, partition, state.last_offset)
                )

    async def _state(self, partition: int) -> PartitionWindows:
        state = self.windows.get(partition)
        if state is None:
            checkpoint = await self.sink.run(load_checkpoint, self.settings.events_topic, partition)
            state = self.windows[partition] = PartitionWindows(
                partition,
                self.bucketer,
                self.settings.grace_seconds,
                self.settings.funnel_conversion_seconds,
                checkpoint,
            )
        return state

    def _observe(self, partition: int, state: PartitionWindows) -> None:
        metrics.WATERMARK.labels(str(partition)).set(state.watermark)
        metrics.WATERMARK_LAG.labels(str(partition)).set(time.time() - state.watermark)
        seen = self.rerouted_seen.get(partition)
        if seen:  # ids older than every open window can no longer be double counted
            self.rerouted_seen[partition] = {key: ts for key, ts in seen.items() if ts >= state.close_point}

    def _release(self, partition: int, checkpoint_offset: int) -> None:
        """Acknowledge the messages below the checkpoint: no open window needs them any more."""
        held = self.held[partition]
        while held and held[0].message.offset < checkpoint_offset:
            held.popleft().ack()
        metrics.HELD_MESSAGES.set(sum(len(queue) for queue in self.held.values()))


def _dead_letter_row(event: EventT, topic: str) -> DeadLetterRow:
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


def build_worker_app(settings: Settings, bootstrap: str, client: Client) -> faust.App:
    app = create_app(settings, bootstrap)
    sink = Sink(client)
    topics = Topics(
        events_topic(app, settings),
        dlq_topic(app, settings),
        app.topic(settings.processed_topic, key_serializer="raw", value_serializer="raw"),
    )
    worker = WindowWorker(settings, sink, topics)
    within = settings.sink_batch_seconds

    async def process_events(stream: faust.StreamT[bytes]) -> None:
        # noack: the worker acknowledges a message only once no open window needs it (see module doc)
        async for batch in stream.noack_take(settings.sink_batch_messages, within=within):  # type: ignore[attr-defined]
            await worker.process(batch)

    async def store_dead_letters(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(settings.sink_batch_messages, within=within):  # type: ignore[attr-defined]
            rows = [_dead_letter_row(event, settings.dlq_topic) for event in batch]
            await sink.run(insert_dead_letters, rows)
            metrics.DEAD_LETTERS_STORED.inc(len(rows))
            last = {event.message.partition: event.message.offset for event in batch}
            for partition, offset in last.items():
                await topics.processed.send(value=encode_processed(settings.dlq_topic, partition, offset))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(app: faust.App, revoked: set[TP], **_: Any) -> None:
        worker.revoke({tp.partition for tp in revoked if tp.topic == settings.events_topic})

    app.agent(topics.events, name="process_events")(process_events)
    app.agent(topics.dead_letters, name="store_dead_letters")(store_dead_letters)
    app.timer(settings.window_flush_seconds, name="flush_windows")(worker.flush)
    return app


def run_worker(settings: Settings, bootstrap: str, client: Client) -> None:
    """Run the worker until SIGTERM/SIGINT (Faust handles both and stops cleanly)."""
    app = build_worker_app(settings, bootstrap, client)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
