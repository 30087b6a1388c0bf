"""Checkpoints are found wherever the checkpoints topic keeps them."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka import AIOKafkaProducer

from stream.checkpoints import encode_checkpoint, latest_checkpoints
from stream.kafka import MAX_MESSAGE_BYTES, ensure_topics
from stream.windows import Checkpoint

pytestmark = pytest.mark.integration


async def _publish(bootstrap: str, topic: str, checkpoints: list[Checkpoint]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        for checkpoint in checkpoints:
            key = str(checkpoint.partition).encode()
            await producer.send_and_wait(topic, encode_checkpoint(checkpoint), key=key)
    finally:
        await producer.stop()


def test_the_newest_checkpoint_of_every_partition_is_found_on_a_topic_of_several_partitions(
    bootstrap: str,
) -> None:
    """As Tansu creates a topic on a first produce (4 partitions): the keys spread over all of them.
    A checkpoint missed there made its partition start over from the committed offset, and the recount
    replaced final windows with partial ones (issue 19)."""
    topic = "checkpoints.spread"
    asyncio.run(ensure_topics(bootstrap, {topic: 4}))
    written = [
        Checkpoint(partition, offset=10 * version, watermark=version, closed_before=version, version=version)
        for version in range(1, 4)
        for partition in range(4)
    ]
    asyncio.run(_publish(bootstrap, topic, written))
    found = asyncio.run(latest_checkpoints(bootstrap, topic)).latest
    assert found == {checkpoint.partition: checkpoint for checkpoint in written[-4:]}


def test_a_missing_checkpoints_topic_holds_no_checkpoints(bootstrap: str) -> None:
    assert asyncio.run(latest_checkpoints(bootstrap, "checkpoints.never.written")).latest == {}


def test_a_checkpoint_carrying_windows_of_many_megabytes_comes_back_whole(bootstrap: str) -> None:
    """A busy partition's open windows make a checkpoint far over Kafka's default 1 MB message."""
    topic = "checkpoints.large"
    asyncio.run(ensure_topics(bootstrap, {topic: 1}))
    state = os.urandom(12 << 20)
    written = [Checkpoint(0, 10, 1, 1, 9), Checkpoint(0, 20, 2, 2, 19, (), state)]
    asyncio.run(_publish(bootstrap, topic, written))
    assert asyncio.run(latest_checkpoints(bootstrap, topic)).latest == {0: written[-1]}
