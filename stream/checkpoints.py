"""Window checkpoints on Kafka (`omstream.checkpoints`, keyed by source partition).

Workers do not open ClickHouse (in embedded mode only the sink may), so a worker that is assigned a
partition finds where to rebuild its windows from here: the latest checkpoint of that partition.
The topic is read up to the high-water mark of a fetch, which Tansu reports exactly (its ListOffsets
does not). On Kafka the topic can be compacted: only the latest record per key matters.
"""

from __future__ import annotations

import dataclasses

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.windows import Checkpoint


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    return orjson.dumps(dataclasses.asdict(checkpoint))


async def latest_checkpoints(bootstrap: str, topic: str) -> dict[int, Checkpoint]:
    """The newest checkpoint of every source partition (highest version wins)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    latest: dict[int, Checkpoint] = {}
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        while True:
            records = (await consumer.getmany(partition, timeout_ms=300)).get(partition, [])
            for record in records:
                checkpoint = Checkpoint(**orjson.loads(record.value))
                known = latest.get(checkpoint.partition)
                if known is None or known.version <= checkpoint.version:
                    latest[checkpoint.partition] = checkpoint
            if await consumer.position(partition) >= (consumer.highwater(partition) or 0):
                return latest
    finally:
        await consumer.stop()
