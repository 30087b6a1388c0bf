"""The `processed` topic: how far each source partition is stored in ClickHouse, windows included.

Kafka's committed offsets cannot say this: the worker holds acknowledgements while windows are open.
After every write the sink publishes `{"stage", "topic", "partition", "offset"}`: the last source
offset whose effects of that stage are all in ClickHouse. A demo, a benchmark or a test can so wait
for "everything is stored" with any number of workers, without reading ClickHouse (which chDB would
not allow from a second process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from enum import StrEnum

import orjson
from aiokafka import AIOKafkaConsumer

from stream.kafka import high_water_marks, kafka_options

Position = tuple[str, int]


class NotStored(TimeoutError):
    """What was produced was not all stored in time."""


class Stage(StrEnum):
    RAW = "raw"  # events in the raw table
    WINDOWS = "windows"  # the window rows of events (positions are the events topic's)
    DEAD_LETTERS = "dead_letters"
    AUDIT = "audit"  # the control plane's results in the audit table
    ALERTS = "alerts"  # anomaly alerts in the alerts table


def encode_processed(stage: Stage, topic: str, partition: int, offset: int) -> bytes:
    return orjson.dumps({"stage": stage, "topic": topic, "partition": partition, "offset": offset})


class ProcessedWatcher:
    """Follows the processed topic from the beginning: the offset each (stage, topic, partition) reached."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.stages: dict[tuple[str, str, int], int] = {}
        self._bootstrap = bootstrap
        self._consumer = AIOKafkaConsumer(topic, **kafka_options(bootstrap), auto_offset_reset="earliest")

    async def __aenter__(self) -> ProcessedWatcher:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> None:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        for record in (record for records in batches.values() for record in records):
            try:
                body = orjson.loads(record.value or b"")
                key = (str(body["stage"]), str(body["topic"]), int(body["partition"]))
                offset = int(body["offset"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # not the sink's: another producer's record is no position
            self.stages[key] = max(self.stages.get(key, -1), offset)

    def behind(self, targets: dict[Position, int], stages: dict[str, set[str]]) -> dict[Position, int]:
        """Targets some required stage has not reached; `stages` names the required stages per topic."""
        return {
            (topic, partition): last
            for (topic, partition), last in targets.items()
            if any(self.stages.get((stage, topic, partition), -1) < last for stage in stages[topic])
        }

    async def last_offsets(self, topic: str, partitions: int) -> dict[Position, int]:
        """The last offset of each partition that holds messages."""
        marks = await high_water_marks(self._bootstrap, topic, partitions)
        return {(topic, partition): mark - 1 for partition, mark in marks.items() if mark}

    async def wait(
        self,
        targets: dict[Position, int],
        stages: dict[str, set[str]],
        timeout: float,
        check: Callable[[], None],
    ) -> None:
        """Until every (topic, partition) is processed up to its target offset; `check` may raise."""
        deadline = time.monotonic() + timeout
        while behind := self.behind(targets, stages):
            check()
            if time.monotonic() > deadline:
                raise NotStored(f"not everything was stored within {timeout:.0f} s: behind on {behind}")
            await self.poll()
            await asyncio.sleep(0)
