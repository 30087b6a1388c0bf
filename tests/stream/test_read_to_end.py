"""`read_to_end` reads a topic to its end even when the broker answers its first fetch late.

Under load a fetch can take longer than one poll: the reader then knows no high-water mark yet, which
is not the end of the topic. (It read as an empty topic before: a restarted sink's detector would have
found no alerts published and raised them all again, and a worker no checkpoint to resume from.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from omstream.settings import Settings
from stream.kafka import read_to_end

pytestmark = pytest.mark.integration


def test_a_first_fetch_answered_late_is_not_the_end(
    settings: Settings, bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = settings.alerts_topic
    getmany = AIOKafkaConsumer.getmany
    polls = 0

    async def slow_first_fetch(self: AIOKafkaConsumer, *partitions: Any, **options: Any) -> Any:
        nonlocal polls
        polls += 1
        if polls == 1:
            return {}  # the poll timed out before the broker's first answer
        return await getmany(self, *partitions, **options)

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for number in range(3):
                await producer.send_and_wait(topic, str(number).encode())
        finally:
            await producer.stop()
        monkeypatch.setattr(AIOKafkaConsumer, "getmany", slow_first_fetch)
        return [record.value or b"" async for record in read_to_end(bootstrap, topic)]

    assert asyncio.run(run()) == [b"0", b"1", b"2"]
