"""Window checkpoints on Kafka (`omstream.checkpoints`, keyed by source partition).

Workers do not open ClickHouse (in embedded mode only the sink may), so a worker that is assigned a
partition finds where to rebuild its windows from here: the latest checkpoint of that partition.
On Kafka the topic can be compacted: only the latest record per key matters.
"""

from __future__ import annotations

import dataclasses

import orjson

from stream.kafka import read_to_end
from stream.windows import Checkpoint


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    return orjson.dumps(dataclasses.asdict(checkpoint))


async def latest_checkpoints(bootstrap: str, topic: str) -> dict[int, Checkpoint]:
    """The newest checkpoint of every source partition (highest version wins)."""
    latest: dict[int, Checkpoint] = {}
    async for record in read_to_end(bootstrap, topic):
        checkpoint = Checkpoint(**orjson.loads(record.value or b"{}"))
        known = latest.get(checkpoint.partition)
        if known is None or known.version <= checkpoint.version:
            latest[checkpoint.partition] = checkpoint
    return latest
