"""The stream worker: a Faust agent computing the real-time windows of its partitions.

Workers never open ClickHouse (in embedded mode only the sink may): they publish window rows to
`omstream.windows`, checkpoints to `omstream.checkpoints`, and bad or late input to the dead-letter
topic. Per take of messages the agent updates each partition's windows, sends the rows and the
checkpoints, waits until Kafka has them, and only then acknowledges the messages that no open window
needs any more. Kafka offsets therefore never pass a checkpoint: a crash re-delivers what the
windows need, rebuilding them exactly, and the sink's tables absorb the repeated rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

import faust
import numpy as np
from faust.types import TP, EventT, Message

from stream import metrics
from stream.app import FaustConfig, Takes, create_app, raw_topic
from stream.bulk import Bulk, bulk_buffer, deliver_in_bulk
from stream.checkpoints import encode_checkpoint, latest_checkpoints
from stream.events import (
    BEHAVIOR_CODE,
    AcceptRange,
    DeadLetter,
    Event,
    EventFields,
    Rejected,
    RejectReason,
    as_event,
    decode_fields,
    decode_message,
    decode_singles,
    encode_events,
)
from stream.kafka import MAX_MESSAGE_BYTES, Partitioner
from stream.results import encode_results
from stream.topics import Topics
from stream.windows import Batch, Bucketer, Checkpoint, PartitionWindows, WindowRules

_USER, _ITEM, _CATEGORY, _BEHAVIOR, _TS = (
    attrgetter(name) for name in ("user_id", "item_id", "category_id", "behavior", "ts")
)
_CHECKPOINT_FIELDS_BYTES = 4_096  # a checkpoint's fields around its window state, generously
log = logging.getLogger(__name__)
FULL_FLUSH_SHARE = 0.1  # at most this share of a worker's time goes to rewriting open windows


def full_flush_interval(flush_seconds: float, last_cost: float) -> float:
    """How often every open window is written (closed ones are written at every take).

    A full flush recomputes every open window, a day's funnel over all of the day's events so far:
    far behind the stream (a backlog at a data set's scale) that costs seconds, so the interval
    stretches to keep full flushes to FULL_FLUSH_SHARE of the worker's time.
    """
    return max(flush_seconds, last_cost / FULL_FLUSH_SHARE)


@dataclass(frozen=True)
class WorkerConfig:
    faust: FaustConfig
    topics: Topics
    partitions: int  # of the events topic: users are routed by it
    accept_range: AcceptRange  # accepted event times
    takes: Takes
    timezone: str  # of day windows
    grace_seconds: int  # allowed lateness
    funnel_conversion_seconds: int
    flush_seconds: float  # how often open windows are written
    snapshot_seconds: float  # how often a checkpoint carries the open windows


class PartitionInput:
    """One partition's share of a take: its messages in offset order, and per event to window the
    message it came in (by index)."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.message_index: list[int] = []
        self.events: list[EventFields] = []
        self.user_ids: list[int] = []

    def add_message(self, offset: int) -> int:
        """Register a message; returns its index, which its events carry."""
        self.offsets.append(offset)
        return len(self.offsets) - 1

    def add_events(self, events: list[EventFields], user_ids: list[int], message: int) -> None:
        self.events += events
        self.user_ids += user_ids
        self.message_index += [message] * len(events)

    def add_singles(self, offsets: list[int], events: list[EventFields], user_ids: list[int]) -> None:
        """Messages of one event each, in order: the n-th event came in the n-th message."""
        start = len(self.offsets)
        self.offsets += offsets
        self.events += events
        self.user_ids += user_ids
        self.message_index += range(start, start + len(events))

    def batch(self) -> Batch:
        events = self.events

        def column(values: Iterable[int]) -> np.ndarray[Any, np.dtype[np.int64]]:
            return np.fromiter(values, dtype=np.int64, count=len(events))

        return Batch(
            self.offsets,
            column(self.message_index),
            column(self.user_ids),
            column(map(_TS, events)),
            column(map(BEHAVIOR_CODE.__getitem__, map(_BEHAVIOR, events))),
            column(map(_ITEM, events)),
            column(map(_CATEGORY, events)),
        )


@dataclass(frozen=True)
class Assignment:
    """The partitions this worker may window now, and the group generation that assigned them.

    A take can hold messages fetched before a rebalance and reach the worker after the revocation.
    They are skipped, and the partition's next owner (perhaps this worker again) reads them from the
    committed offset: windowed, they would reopen the partition from a later offset than the one
    Kafka re-delivers from, and the re-delivered events would then count as late.
    """

    partitions: frozenset[int] = frozenset()
    generation: int | None = None

    def admits(self, message: Message) -> bool:
        return message.generation_id == self.generation and message.partition in self.partitions

    def without(self, revoked: set[int]) -> Assignment:
        return Assignment(self.partitions - revoked, self.generation)


@dataclass(frozen=True)
class WorkerTopics:
    """The topics a worker reads and writes, as Faust topics."""

    events: faust.TopicT
    dead_letters: faust.TopicT
    windows: faust.TopicT
    checkpoints: faust.TopicT


class WindowWorker:
    """The window state of the partitions assigned to this worker, and the processing of one take."""

    def __init__(self, config: WorkerConfig, topics: WorkerTopics) -> None:
        self.config = config
        self.topics = topics
        self.partitioner = Partitioner(config.partitions)
        self.rules = WindowRules(
            Bucketer(config.timezone), config.grace_seconds, config.funnel_conversion_seconds
        )
        self.windows: dict[int, PartitionWindows] = {}
        # per partition: when its last message came (monotonic), and the watermark it left
        self.last_message: dict[int, tuple[float, int]] = {}
        self.held: dict[int, deque[EventT]] = defaultdict(deque)
        self.last_flush = 0.0
        self.behind_since: float | None = None  # since when takes have not reached the topic's end
        self.last_flush_cost = 0.0  # seconds the last full flush took to compute its rows
        self.sent_positions: tuple[dict[int, int], dict[int, int]] = ({}, {})  # and written through
        self.sent_checkpoints: dict[int, Checkpoint] = {}  # or the one a partition was rebuilt from
        self.snapshot_at: dict[int, float] = {}  # per partition, when its open windows were last saved
        self.snapshots: dict[int, asyncio.Future[Checkpoint]] = {}  # being encoded
        self._lock = asyncio.Lock()  # a take and the flush timer never interleave
        self._in_flight: list[Awaitable[Any]] = []  # sends to wait for before acknowledging
        self._accept_range = config.accept_range
        self.assignment = Assignment()

    async def assign(self, partitions: set[int], generation: int | None) -> None:
        async with self._lock:
            self.assignment = Assignment(frozenset(partitions), generation)

    async def revoke(self, partitions: set[int]) -> None:
        """Forget revoked partitions: their next owner rebuilds them from the checkpoint.

        A take in progress finishes first (the lock), so its rows and checkpoint are on Kafka before
        this worker rejoins the group and the partition's next owner reads them.
        """
        async with self._lock:
            self.assignment = self.assignment.without(partitions)
            for partition in partitions:
                self.windows.pop(partition, None)
                self.held.pop(partition, None)
                self.sent_checkpoints.pop(partition, None)
                self.snapshot_at.pop(partition, None)
                self.snapshots.pop(partition, None)
                self.last_message.pop(partition, None)

    async def process(self, batch: Sequence[EventT]) -> None:
        """One take of bulks of the events topic (see `stream.bulk`)."""
        async with self._lock:
            inputs: dict[int, PartitionInput] = defaultdict(PartitionInput)
            caught_up, messages = True, 0
            for event in batch:
                if not self.assignment.admits(event.message):
                    continue  # the partition's owner reads it again (see `Assignment`)
                partition, bulk = event.message.partition, cast(Bulk, event.value)
                self.held[partition].append(event)
                await self._take(partition, bulk, inputs[partition])
                caught_up &= bulk.caught_up
                messages += len(bulk.offsets)
                bulk.drop_records()
            metrics.MESSAGES_IN.inc(messages)
            await self._add_to_windows(inputs)
            for partition in inputs:
                self.last_message[partition] = (time.monotonic(), self.windows[partition].watermark)
            # a take that reached the end of its partitions has caught up with the topic: write every
            # open window now, not up to a flush interval later (what a live dashboard waits for).
            # Open funnels, which cost far more, wait for the full flush, unless the take ends a
            # stretch behind the topic (a replay or a backlog, whose end waits for everything); a
            # live stream's takes miss the end now and then, which is no such stretch.
            full = self._flush_due() or (caught_up and self._ends_backlog())
            self.behind_since = None if caught_up else (self.behind_since or time.monotonic())
            await self._write_windows(open_windows=full or caught_up, open_funnels=full)
            metrics.EVENTS_IN.inc(sum(len(into.events) for into in inputs.values()))

    async def flush(self) -> None:
        """On a timer: partitions idle for the grace follow the clock, and every open window that
        changed is written (so an idle stream is written out, and its windows close, too)."""
        async with self._lock:
            followed = self._follow_clock(time.monotonic())
            full = self._flush_due()
            if followed or full:
                await self._write_windows(open_windows=True, open_funnels=full)

    def _ends_backlog(self) -> bool:
        since = self.behind_since
        return since is not None and time.monotonic() - since >= self.config.flush_seconds

    def _flush_due(self) -> bool:
        interval = full_flush_interval(self.config.flush_seconds, self.last_flush_cost)
        return time.monotonic() - self.last_flush >= interval

    def _follow_clock(self, now: float) -> bool:
        """Partitions that received nothing for the grace: their watermark advances with the clock,
        from the one their last message left (live events end about now, a historical replay's in
        its own days, which so stay open to a later replay of the same days). Whether any advanced."""
        grace = self.config.grace_seconds
        followed = False
        for partition, state in self.windows.items():
            since, watermark = self.last_message.get(partition, (now, state.watermark))
            floor = watermark + int(now - since) - grace
            if now - since >= grace and floor > state.watermark:
                state.follow_clock(floor)
                followed = True
        return followed

    async def _take(self, partition: int, bulk: Bulk, into: PartitionInput) -> None:
        """A bulk's events into the partition's input: in one pass when every message is one valid event
        of a user of this partition, else message by message."""
        singles = decode_singles(bulk.values, self._accept_range)
        if singles is not None:
            user_ids = list(map(_USER, singles))
            if self.partitioner.all_to(user_ids, partition):
                into.add_singles(bulk.offsets, singles, user_ids)
                return
        for offset, value in zip(bulk.offsets, bulk.values, strict=True):
            fields = decode_fields(value, self._accept_range)
            if fields is None or not self._window(partition, offset, fields, into):
                await self._route_slowly(partition, offset, value, fields, into)

    def _window(self, partition: int, offset: int, fields: list[EventFields], into: PartitionInput) -> bool:
        """The common case, without awaiting: every event valid and of a user of this partition."""
        user_ids = list(map(_USER, fields))
        if not self.partitioner.all_to(user_ids, partition):
            return False
        into.add_events(fields, user_ids, into.add_message(offset))
        return True

    async def _route_slowly(
        self,
        partition: int,
        offset: int,
        value: bytes | None,
        fields: list[EventFields] | None,
        into: PartitionInput,
    ) -> None:
        """A message with bad events (dead-lettered with their reason) or misrouted ones (re-routed)."""
        index = into.add_message(offset)
        if fields is None:  # some item is bad: take the slow path that says why
            fields = []
            for position, result in enumerate(decode_message(value, self._accept_range)):
                if isinstance(result, Rejected):
                    await self._dead_letter(
                        result, f"{self.config.topics.events}/{partition}/{offset}/{position}"
                    )
                else:
                    fields.append(result)
        for item in fields:
            if self.partitioner(item.user_id) != partition:
                await self._reroute(as_event(item))
            else:  # a copy re-routed twice (its sender re-processed) is an exact duplicate: counted once
                into.add_events([item], [item.user_id], index)

    async def _reroute(self, event: Event) -> None:
        metrics.REROUTED.inc()
        partition = self.partitioner(event.user_id)
        await self._send(self.topics.events, encode_events([event]), key=event.key, partition=partition)

    async def _dead_letter(self, rejected: Rejected, origin: str) -> None:
        metrics.DEAD_LETTERS.labels(rejected.reason.value).inc()
        await self._send(self.topics.dead_letters, DeadLetter.of(rejected, "stream", origin).encode())

    async def _send(self, topic: faust.TopicT, value: bytes, **options: Any) -> None:
        self._in_flight.append(await topic.send(value=value, **options))

    async def _sent(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight)
            self._in_flight.clear()

    async def _add_to_windows(self, inputs: dict[int, PartitionInput]) -> None:
        await self._open_new_partitions(set(inputs) - set(self.windows))
        for partition, into in inputs.items():
            state = self.windows[partition]
            batch = into.batch()
            late = state.add(batch)
            for position in np.flatnonzero(late).tolist():
                event = as_event(into.events[position])
                offset = batch.offsets[batch.message_index[position]]
                detail = f"ts={event.ts} is behind watermark {state.watermark} by more than the grace"
                letter = Rejected(RejectReason.LATE, detail, encode_events([event]).decode())
                await self._dead_letter(
                    letter, f"{self.config.topics.events}/{partition}/{offset}/late/{position}"
                )

    async def _write_windows(self, open_windows: bool, open_funnels: bool) -> None:
        """Every closed window's rows, and the open windows' and funnels' that changed when asked:
        a full flush is both."""
        windows, funnels, checkpoints = [], [], []
        full = open_windows and open_funnels
        started = time.perf_counter()
        for partition, state in self.windows.items():
            rows, funnel_rows = state.collect(open_windows, open_funnels)
            windows += rows
            funnels += funnel_rows
            checkpoint = self._checkpoint(partition, state)
            if checkpoint is not None:
                checkpoints.append(checkpoint)
            self._observe(partition, state)
        self._start_snapshot()
        if full:
            self.last_flush_cost = time.perf_counter() - started
        # only a full flush writes every open row, so only it may claim the offsets are stored
        positions = {p: state.last_offset for p, state in self.windows.items()} if full else {}
        through = {p: s.watermark if open_windows else s.close_point for p, s in self.windows.items()}
        if windows or funnels or (open_windows and (positions, through) != self.sent_positions):
            for payload in encode_results(windows, funnels, positions, through):
                await self._send(self.topics.windows, payload)
            self.sent_positions = (positions, through) if open_windows else self.sent_positions
        # The rows (and re-routed events, dead letters) are on Kafka before a checkpoint says their
        # windows are final, and the checkpoint before any message is acknowledged: a crash in between
        # re-delivers the messages, and the next owner writes the rows again.
        await self._sent()
        for checkpoint in checkpoints:
            if self.sent_checkpoints.get(checkpoint.partition) != checkpoint:
                key = str(checkpoint.partition).encode()
                await self._send(self.topics.checkpoints, encode_checkpoint(checkpoint), key=key)
                self.sent_checkpoints[checkpoint.partition] = checkpoint
        await self._sent()
        for (kind, final), count in Counter((row.kind, row.final) for row in windows).items():
            metrics.WINDOW_ROWS.labels(kind, str(final)).inc(count)
        for checkpoint in checkpoints:
            self._release(checkpoint)
        if full:
            self.last_flush = time.monotonic()

    def _start_snapshot(self) -> None:
        """Start saving the open windows of the partition longest unsaved, if it is due: encoded in
        another thread, as it takes a busy partition a good part of a second, and one partition at a
        time. Its checkpoint goes out with a later write, once ready (see `_checkpoint`)."""
        partition = min(self.snapshot_at, key=self.snapshot_at.__getitem__, default=None)
        if partition is None or time.monotonic() - self.snapshot_at[partition] < self.config.snapshot_seconds:
            return
        self.snapshot_at[partition] = time.monotonic()
        checkpoint, encode = self.windows[partition].snapshot()
        self.snapshots[partition] = asyncio.ensure_future(
            asyncio.to_thread(lambda: dataclasses.replace(checkpoint, state=encode()))
        )

    def _checkpoint(self, partition: int, state: PartitionWindows) -> Checkpoint | None:
        """The partition's snapshot once ready, so that the broker can let go of what came before it
        (see `stream.windows.snapshot`); until the next one, the last stands: a checkpoint without
        the open windows would point back to the first event of the open day. While a snapshot is
        being encoded no newer checkpoint goes out, since the newest (by version) is the one a
        restart takes."""
        pending = self.snapshots.get(partition)
        last = self.sent_checkpoints.get(partition)
        if pending is not None and not pending.done():
            return state.with_floors(last) if last is not None and last.state else last
        if pending is not None:
            del self.snapshots[partition]
            snapshot = pending.result()
            metrics.SNAPSHOT_BYTES.labels(str(partition)).set(len(snapshot.state))
            if len(snapshot.state) < MAX_MESSAGE_BYTES - _CHECKPOINT_FIELDS_BYTES:
                return state.with_floors(snapshot)
            # too large to write: the last checkpoint stands, and the broker keeps what it needs
            metrics.SNAPSHOTS_TOO_LARGE.inc()
            size = len(snapshot.state)
            log.warning("partition %d: open windows of %d bytes, over a message's limit", partition, size)
        return state.with_floors(last) if last is not None and last.state else state.checkpoint()

    async def _open_new_partitions(self, partitions: set[int]) -> None:
        """State for newly assigned partitions, from their checkpoints (one read of the topic for all)."""
        if not partitions:
            return
        config = self.config
        checkpoints = await latest_checkpoints(config.faust.bootstrap, config.topics.checkpoints)
        rules = dataclasses.replace(self.rules, epoch=checkpoints.epoch)
        for partition in partitions:
            checkpoint = checkpoints.latest.get(partition)
            self.windows[partition] = PartitionWindows(partition, rules, checkpoint)
            self.last_message.setdefault(partition, (time.monotonic(), self.windows[partition].watermark))
            self.snapshot_at[partition] = time.monotonic()
            if checkpoint is not None and checkpoint.state:
                self.sent_checkpoints[partition] = checkpoint

    def _observe(self, partition: int, state: PartitionWindows) -> None:
        metrics.WATERMARK.labels(str(partition)).set(state.watermark)
        metrics.WATERMARK_LAG.labels(str(partition)).set(time.time() - state.watermark)

    def _release(self, checkpoint: Checkpoint) -> None:
        """Acknowledge the messages below the checkpoint: no open window needs them any more."""
        held = self.held[checkpoint.partition]
        while held and held[0].message.offset < checkpoint.offset:
            held.popleft().ack()
        metrics.HELD_MESSAGES.set(sum(len(queue) for queue in self.held.values()))


def build_worker_app(config: WorkerConfig) -> faust.App:
    app = create_app(config.faust)
    deliver_in_bulk(app, [config.topics.events], config.faust.fetch_wait_ms)
    names = config.topics
    topics = WorkerTopics(
        raw_topic(app, names.events, buffered=bulk_buffer(config.takes.fetches)),
        *(raw_topic(app, name) for name in (names.dead_letters, names.windows, names.checkpoints)),
    )
    worker = WindowWorker(config, topics)

    async def compute_windows(stream: faust.StreamT[bytes]) -> None:
        # noack: the worker acknowledges a message only once no open window needs it (see module doc)
        batches = stream.noack_take(config.takes.fetches, within=config.takes.seconds)  # type: ignore[attr-defined]
        async for batch in batches:
            await worker.process(batch)

    def events_partitions(tps: set[TP]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == names.events}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(app: faust.App, revoked: set[TP], **_: Any) -> None:
        await worker.revoke(events_partitions(revoked))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def take_assigned(app: faust.App, assigned: set[TP], **_: Any) -> None:
        # Faust sets the new generation before it sends this signal, and fetches only after it
        await worker.assign(events_partitions(assigned), app.consumer_generation_id)

    app.agent(topics.events, name="compute_windows")(compute_windows)
    app.timer(config.flush_seconds, name="flush_windows")(worker.flush)
    return app
