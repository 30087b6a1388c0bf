import asyncio
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from omstream.settings import Settings
from stream.emitter import Emitter
from stream.events import Event
from stream.kafka import Partitioner

pytestmark = pytest.mark.integration  # every test here starts a broker

GOOD = {"item_id": 2, "category_id": 3, "behavior": "pv", "ts": 1_511_544_070}


async def read_all(bootstrap: str, topic: str, expected_messages: int) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[tuple[int, bytes]] = []
    try:
        while len(seen) < expected_messages:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 10)
            seen += [(record.partition, record.value) for records in batches.values() for record in records]
    finally:
        await consumer.stop()
    return seen


def test_emitter_packs_each_users_events_on_their_partition(bootstrap: str, settings: Settings) -> None:
    async def scenario() -> None:
        async with Emitter(
            bootstrap, settings.events_topic, settings.dlq_topic, settings.accept_range, pack=7
        ) as emitter:
            for user in range(200):
                await emitter.emit(Event.model_validate({**GOOD, "user_id": user}))
            await emitter.emit_item({**GOOD, "user_id": 1, "behavior": "like"})
            await emitter.emit_item({**GOOD, "user_id": 2, "ts": 5})
            report = await emitter.flush()
        assert (report.sent, report.failed, dict(report.rejected)) == (
            200,
            0,
            {"unknown_behavior": 1, "out_of_window": 1},
        )
        messages = await read_all(bootstrap, settings.events_topic, report.messages)
        partition_of = Partitioner(settings.events_partitions)
        users = [
            (partition, event["user_id"])
            for partition, value in messages
            for event in (lambda body: body if isinstance(body, list) else [body])(orjson.loads(value))
        ]
        assert sorted(user for _, user in users) == list(range(200))
        assert all(partition_of(user) == partition for partition, user in users)
        assert max(Counter(len(orjson.loads(value)) for _, value in messages)) <= 7
        dead = [orjson.loads(value) for _, value in await read_all(bootstrap, settings.dlq_topic, 2)]
        assert sorted(letter["reason"] for letter in dead) == ["out_of_window", "unknown_behavior"]

    asyncio.run(scenario())
