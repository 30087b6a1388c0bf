"""The `processed` topic: how far each source partition is stored in ClickHouse, windows included.

Kafka's committed offsets cannot say this: the worker holds acknowledgements while windows are open.
After every write the worker publishes `{"topic", "partition", "offset"}` (last offset whose effects
are all in ClickHouse), so a demo, a benchmark or a test can wait for "everything is stored" with any
number of workers, without reading ClickHouse (which chDB would not allow from a second process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

Position = tuple[str, int]


def encode_processed(topic: str, partition: int, offset: int) -> bytes:
    return orjson.dumps({"topic": topic, "partition": partition, "offset": offset})


class ProcessedWatcher:
    """Follows the processed topic from the beginning; `reached` tells whether targets are stored."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.positions: dict[Position, int] = {}
        self._bootstrap = bootstrap
        self._consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")

    async def __aenter__(self) -> ProcessedWatcher:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> None:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        for record in (record for records in batches.values() for record in records):
            body = orjson.loads(record.value)
            position = (str(body["topic"]), int(body["partition"]))
            self.positions[position] = max(self.positions.get(position, -1), int(body["offset"]))

    def behind(self, targets: dict[Position, int]) -> dict[Position, int]:
        return {tp: last for tp, last in targets.items() if self.positions.get(tp, -1) < last}

    async def dead_letter_target(self, topic: str) -> dict[Position, int]:
        """The last offset of the (one-partition) dead-letter topic, from a fetch's high-water mark:
        Tansu answers ListOffsets wrongly after batched writes, but its fetch high-water is exact."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            consumer.seek(partition, 0)
            await consumer.getmany(partition, timeout_ms=500)
            highwater = consumer.highwater(partition) or 0
        finally:
            await consumer.stop()
        return {(topic, 0): highwater - 1} if highwater else {}

    async def wait(self, targets: dict[Position, int], timeout: float, check: Callable[[], None]) -> None:
        """Until every (topic, partition) is processed up to its target offset; `check` may raise."""
        deadline = time.monotonic() + timeout
        while self.behind(targets):
            check()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not everything was stored within {timeout:.0f} s: behind on {self.behind(targets)}"
                )
            await self.poll()
            await asyncio.sleep(0)
