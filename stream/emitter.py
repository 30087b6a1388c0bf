"""The emitter client: how a service puts user-behaviour events on Kafka correctly.

It validates each event, routes it to its user's partition (Kafka's default key hashing), packs up to
`pack` events of one partition into one message (the batched wire format), and dead-letters what is
invalid, with the reason. Delivery failures are counted and returned, never swallowed.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

from stream.events import AcceptRange, DeadLetter, Event, Rejected, encode_events, validate_item
from stream.kafka import Partitioner, kafka_options

_MAX_IN_FLIGHT = 2_000  # messages awaiting acknowledgement before emit() waits


@dataclass
class EmitReport:
    sent: int = 0
    messages: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    # highest acknowledged offset per partition: lets a caller wait until a consumer has passed it
    last_offsets: dict[int, int] = field(default_factory=dict)
    dead_letter_offsets: dict[int, int] = field(default_factory=dict)


class Emitter:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        dlq_topic: str,
        accept_range: AcceptRange,
        pack: int = 250,
        source: str = "emitter",
    ) -> None:
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.accept_range = accept_range
        self.pack = pack
        self.source = source
        self.report = EmitReport()
        self._producer = AIOKafkaProducer(
            **kafka_options(bootstrap), linger_ms=5, max_batch_size=1 << 20, max_request_size=8 << 20
        )
        self._partitioner: Partitioner | None = None
        self._buffers: dict[int, list[Event]] = defaultdict(list)
        self._in_flight: set[asyncio.Future[Any]] = set()

    async def __aenter__(self) -> Emitter:
        await self._producer.start()
        partitions = await self._producer.partitions_for(self.topic)
        self._partitioner = Partitioner(len(partitions))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                await self.flush()
        finally:
            await self._producer.stop()

    async def emit(self, event: Event) -> None:
        assert self._partitioner is not None, "use the emitter as `async with Emitter(...)`"
        partition = self._partitioner(event.user_id)
        buffer = self._buffers[partition]
        buffer.append(event)
        if len(buffer) >= self.pack:
            await self._send(partition, buffer)
            self._buffers[partition] = []

    async def emit_item(self, item: Any) -> None:
        """Validate untrusted input (a dict from JSON, say), then emit it or dead-letter it."""
        result = validate_item(item, self.accept_range)
        await (self.emit(result) if isinstance(result, Event) else self.reject(result))

    async def reject(self, rejected: Rejected) -> None:
        self.report.rejected[rejected.reason.value] += 1
        future = await self._producer.send(self.dlq_topic, DeadLetter.of(rejected, self.source).encode())
        self._track(future, on_ok=self._dlq_delivered)

    @property
    def partitions(self) -> int:
        """How many partitions the topic has (known once the emitter is open)."""
        assert self._partitioner is not None, "use the emitter as `async with Emitter(...)`"
        return self._partitioner.partitions

    def partition_of(self, event: Event) -> int:
        assert self._partitioner is not None, "use the emitter as `async with Emitter(...)`"
        return self._partitioner(event.user_id)

    async def send_encoded(self, partition: int, events: list[bytes]) -> None:
        """Send events of one partition, already validated, routed and encoded (JSON objects), as one
        batched message: what a replay whose lines chDB judged and encoded sends."""
        if len(self._in_flight) >= _MAX_IN_FLIGHT:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        # the wire format of `encode_events`: one event as an object, several as an array
        value = events[0] if len(events) == 1 else b"[" + b",".join(events) + b"]"
        future = await self._producer.send(self.topic, value, partition=partition)
        count = len(events)
        self._track(future, on_ok=lambda metadata: self._delivered(metadata, count), count=count)

    async def send_buffered(self) -> None:
        """Send the events waiting for a message to fill (a paced replay does, before it waits)."""
        for partition, buffer in list(self._buffers.items()):
            if buffer:
                await self._send(partition, buffer)
        self._buffers.clear()

    async def flush(self) -> EmitReport:
        """Send every buffered event and wait for all acknowledgements."""
        await self.send_buffered()
        if self._in_flight:
            await asyncio.wait(self._in_flight)
        return self.report

    async def _send(self, partition: int, events: list[Event]) -> None:
        if len(self._in_flight) >= _MAX_IN_FLIGHT:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        future = await self._producer.send(
            self.topic, encode_events(events), key=events[0].key, partition=partition
        )
        count = len(events)
        self._track(future, on_ok=lambda metadata: self._delivered(metadata, count), count=count)

    def _track(self, future: asyncio.Future[Any], on_ok: Any, count: int = 1) -> None:
        self._in_flight.add(future)

        def done(finished: asyncio.Future[Any]) -> None:
            self._in_flight.discard(finished)
            error = finished.exception()
            if error is None:
                on_ok(finished.result())
            else:
                self.report.failed += count
                if len(self.report.errors) < 10:
                    self.report.errors.append(f"{type(error).__name__}: {error}")

        future.add_done_callback(done)

    def _delivered(self, metadata: Any, count: int) -> None:
        self.report.sent += count
        self.report.messages += 1
        _advance(self.report.last_offsets, metadata)

    def _dlq_delivered(self, metadata: Any) -> None:
        _advance(self.report.dead_letter_offsets, metadata)


def _advance(offsets: dict[int, int], metadata: Any) -> None:
    offsets[metadata.partition] = max(offsets.get(metadata.partition, -1), metadata.offset)
