"""Window checkpoints on Kafka (`omstream.checkpoints`): where each partition's windows resume.

Workers do not open ClickHouse (in embedded mode only the sink may), so a worker that is assigned a
partition finds where to rebuild its windows from here: the latest checkpoint of that partition
(records keyed by source partition; the topic can be compacted). A checkpoint that carries the open
windows (`stream.windows.snapshot`) is its JSON fields, a NUL byte, then the snapshot's bytes.

Every partition of the topic is read: a topic that a broker created on a first produce (Tansu, for
services started by hand) has several, and the keys spread over them. A checkpoint missed there is
no small loss: the partition would be rebuilt from its committed offset as if it had no history, and
its recount of windows that were already final, short of their events before that offset, would
replace their rows.

The topic also carries the broker's epoch (key `epoch`), written by the embedded runtime when it
starts a fresh broker: rows of an earlier broker then win over a later one's (see
`stream.windows.row_version`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from stream.kafka import read_every_partition
from stream.windows import Checkpoint

EPOCH_KEY = b"epoch"


@dataclass(frozen=True)
class Checkpoints:
    latest: dict[int, Checkpoint] = field(default_factory=dict)  # by source partition
    epoch: int = 0  # the broker's epoch; 0: one broker for ever


_STATE_MARK = b"\0"  # after the JSON fields (which never hold a raw NUL), the window state's bytes


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    fields = dataclasses.asdict(dataclasses.replace(checkpoint, state=b""))
    del fields["state"]
    return orjson.dumps(fields) + (_STATE_MARK + checkpoint.state if checkpoint.state else b"")


def decode_checkpoint(value: bytes) -> Checkpoint:
    fields, _, state = value.partition(_STATE_MARK)
    body = orjson.loads(fields)
    floors = tuple((int(offset), int(floor)) for offset, floor in body.pop("floors", ()))
    return Checkpoint(**body, floors=floors, state=state)


async def latest_checkpoints(bootstrap: str, topic: str) -> Checkpoints:
    """The newest checkpoint of every source partition (highest version wins), and the epoch."""
    latest: dict[int, Checkpoint] = {}
    epoch = 0
    async for record in read_every_partition(bootstrap, topic):
        if record.key == EPOCH_KEY:
            epoch = int(orjson.loads(record.value or b"0"))
            continue
        checkpoint = decode_checkpoint(record.value or b"{}")
        known = latest.get(checkpoint.partition)
        if known is None or known.version <= checkpoint.version:
            latest[checkpoint.partition] = checkpoint
    return Checkpoints(latest, epoch)


async def start_epoch(bootstrap: str, topic: str, epoch: int) -> None:
    """Record the epoch of a fresh broker (the embedded runtime's, which counts them)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, orjson.dumps(epoch), key=EPOCH_KEY)
    finally:
        await producer.stop()
