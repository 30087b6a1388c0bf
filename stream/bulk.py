"""Bulk delivery: the events topic reaches the agents one fetch of a partition at a time.

Faust hands an agent one event per Kafka message, and its machinery (the fetcher's tasks, the
conductor, `Event`s, the stream and the take buffer) costs far more per message than our decoding
and windows do. Services that write to Kafka themselves send one user-behaviour event per message,
so on that input Faust's per-message cost was nearly all of a worker's and the sink's time.

`BulkConsumer` is Faust's aiokafka consumer with one change for the topics it is given: each fetch's
records of one partition become one message whose value is a `Bulk` (the records' values and
offsets, and the partition's high-water mark at that fetch). Its offset is the last record's, and it
carries the generation it was fetched in, so everything Faust and our agents do per message (the
generation check, acknowledgements, commits on their schedule, on revocation and at stop) happens
per bulk. Other topics keep Faust's per-message path.

Acknowledging a bulk acknowledges its whole offset range, and commits advance only over ranges that
are contiguous from the committed offset. (Faust's own gap bookkeeping is not used for bulk
topics: it would record a bulk's last offset as both a gap and an acknowledgement, and the repeat
stops its consecutive-offsets scan, so commits would fall behind.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import aiokafka
import faust
from faust.transport.consumer import ConsumerThread
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage
from mode.utils.futures import notify

_VALUE, _OFFSET = attrgetter("value"), attrgetter("offset")


@dataclass(slots=True)
class Bulk:
    """One fetch's records of one partition, in offset order."""

    values: list[bytes | None]  # None: a record without a value
    offsets: list[int]
    highwater: int | None  # the partition's end at that fetch (exact on Tansu, unlike ListOffsets)
    first: int  # acknowledging the bulk acknowledges every offset from here to its last

    @property
    def caught_up(self) -> bool:
        """Whether the bulk reaches the end the partition had when it was fetched."""
        return self.highwater is not None and self.offsets[-1] + 1 >= self.highwater

    def drop_records(self) -> None:
        """Free the records of a bulk that is kept only to be acknowledged later (its message keeps
        the offsets an acknowledgement needs): a worker holds a day's bulks while a day window is open."""
        self.values = []
        self.offsets = []


class _ConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, its fetches waiting at the broker for the consumer's `fetch_wait_ms`."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.consumer.fetch_wait_ms  # type: ignore[attr-defined]  # Faust fixes 1500
        return consumer


class BulkConsumer(FaustConsumer):
    """Faust's aiokafka consumer, delivering `bulk_topics` one fetch of a partition at a time."""

    bulk_topics: frozenset[str] = frozenset()
    # Kafka answers a fetch as soon as records arrive; Tansu waits out the whole of it whenever the
    # partition has nothing new, so the wait is a delay every caught-up consumer pays
    fetch_wait_ms: int = 1500

    def _new_consumer_thread(self) -> ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _reset_state(self) -> None:  # Faust calls it from __init__ too
        super()._reset_state()
        self._acked_ranges: dict[TP, list[tuple[int, int]]] = defaultdict(list)
        self._next_first: dict[TP, tuple[int | None, int]] = {}  # tp -> (generation, next offset)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        records, active = await self._wait_next_records(timeout)
        generation = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            await self._seek_to_committed()
            return
        for tp, fetched in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break  # a rebalance began: what is left is read again by the partition's owner
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            highwater = self.highwater(tp)
            self.app.monitor.track_tp_end_offset(tp, highwater)
            if tp.topic in self.bulk_topics:
                yield tp, self._bulk_message(tp, fetched, highwater, generation)
            else:
                for record in fetched:
                    yield tp, self._to_message(tp, record)

    async def _seek_to_committed(self) -> None:
        """Back to the committed offsets, as Faust does when a fetch returns while its flow is stopped.
        A rebalance in progress may have taken the partitions away meanwhile: the next assignment
        seeks anyway, so that failure is only logged (as Faust does)."""
        try:
            await self.perform_seek()
        except Exception as error:  # aiokafka raises IllegalStateError, among others
            self.log.warning("could not seek to the committed offsets while stopped: %r", error)

    def _bulk_message(self, tp: TP, records: list[Any], highwater: int | None, generation: int) -> Message:
        offsets = list(map(_OFFSET, records))
        last = records[-1]
        bulk = Bulk(
            list(map(_VALUE, records)), offsets, highwater, self._first_offset(tp, offsets[0], generation)
        )
        self._next_first[tp] = (generation, last.offset + 1)
        return ConsumerMessage(
            tp.topic,
            tp.partition,
            last.offset,
            (last.timestamp or 0) / 1000.0,
            last.timestamp_type,
            None,
            None,
            bulk,  # type: ignore[arg-type]  # the raw codec passes any value through
            None,
            0,
            0,
            tp,
            generation_id=generation,
        )

    def _first_offset(self, tp: TP, first_record: int, generation: int) -> int:
        """Where the bulk's acknowledged range starts: right after the previous bulk of this generation
        (so offsets a topic skips between fetches are covered), else at the committed offset."""
        previous = self._next_first.get(tp)
        if previous is not None and previous[0] == generation:
            return min(previous[1], first_record)
        committed = self._committed_offset[tp]
        return committed if committed is not None and committed <= first_record else first_record

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic not in self.bulk_topics:  # a bulk's offsets are acknowledged as a range instead
            await super()._add_gap(tp, offset_from, offset_to)

    def ack(self, message: Message) -> bool:
        bulk = message.value
        if not isinstance(bulk, Bulk):
            return bool(super().ack(message))
        if message.acked:
            return False
        message.acked = True
        tp = message.tp
        committed = self._committed_offset[tp]
        try:
            if committed is not None and message.offset < committed:
                return False
            self._unacked_messages.discard(message)
            self._acked_ranges[tp].append((bulk.first, message.offset))
            self._acked[tp]  # Faust commits the partitions it finds in _acked
            self._n_acked += 1
            return True
        finally:
            notify(self._waiting_for_ack)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit: past every range contiguous from the committed offset."""
        if tp.topic not in self.bulk_topics:
            return super()._new_offset(tp)
        ranges = self._acked_ranges.get(tp)
        if not ranges:
            return None
        ranges.sort()
        committed = self._committed_offset[tp]
        following = committed if committed is not None else ranges[0][0]
        new_offset = None
        while ranges and ranges[0][0] <= following:
            _, last = ranges.pop(0)
            if last + 1 > following:
                following = new_offset = last + 1
        return new_offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            self._acked_ranges.pop(tp, None)
            self._next_first.pop(tp, None)


def bulk_buffer(fetches_per_take: int) -> int:
    """How many bulks may wait for an agent: the next take's, no more. Faust's buffer counts messages,
    and a bulk can hold a fetch's thousands: a buffer sized for messages would let a consumer read
    ahead of its agent without bound, and hold it all in memory."""
    return 2 * fetches_per_take


def deliver_in_bulk(app: faust.App, topics: Iterable[str], fetch_wait_ms: int) -> None:
    """Make `app` read `topics` one fetch of a partition at a time, its fetches waiting at most
    `fetch_wait_ms` at the broker (before the app starts)."""
    options = {"bulk_topics": frozenset(topics), "fetch_wait_ms": fetch_wait_ms}
    consumer = type("BulkConsumer", (BulkConsumer,), options)
    app.transport.Consumer = consumer  # type: ignore[misc]  # the transport creates its consumer from it
