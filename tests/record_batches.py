"""Kafka record batches written byte by byte, as a producer with a bug of its own (or a codec the
reader lacks) leaves them on a topic, and a raw Produce request that puts them there unchanged."""

from __future__ import annotations

import struct

from aiokafka import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record._crc32c import crc as crc32c
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition

GZIP, SNAPPY, LZ4, ZSTD = 1, 2, 3, 4
_ATTRIBUTES, _CRC = 21, 17  # where a v2 batch's attributes and CRC are


def record_batch(values: list[bytes], base: int = 0, codec: int = 0) -> bytearray:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=1_000, key=None, value=value, headers=[])
    data = bytearray(builder.build())
    data[0:8] = struct.pack(">q", base)
    return data


def with_crc(data: bytearray) -> bytes:
    """The batch with its CRC recomputed over whatever it now holds."""
    data[_CRC : _CRC + 4] = struct.pack(">I", crc32c(bytes(data[_ATTRIBUTES:])))
    return bytes(data)


def unknown_codec(values: list[bytes], base: int = 0) -> bytes:
    data = record_batch(values, base)
    data[_ATTRIBUTES + 1] = (data[_ATTRIBUTES + 1] & ~7) | 5  # codec 5 does not exist
    return with_crc(data)


def corrupt_gzip(values: list[bytes], base: int = 0) -> bytes:
    """A gzip batch whose compressed bytes are damaged, under a valid CRC."""
    data = record_batch(values, base, codec=GZIP)
    data[-5] ^= 0xFF
    return with_crc(data)


def bad_crc(values: list[bytes], base: int = 0) -> bytes:
    data = record_batch(values, base)
    data[-1] ^= 1
    return bytes(data)


async def produce_raw(bootstrap: str, topic: str, partition: int, batch: bytes) -> int:
    """Append `batch` as it is to a partition; returns the offset the broker gave it."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        response = await client.send(leader, ProduceRequest(None, 1, 10_000, [(topic, [(partition, batch)])]))
        [(_, [(_, error, offset, *_)])] = response.topics
        assert error == 0, f"the broker refused the batch (error {error})"
        return int(offset)
    finally:
        await client.close()
