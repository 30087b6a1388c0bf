"""aiokafka's fetch, made to survive record batches it cannot decode.

aiokafka decodes a fetched record batch while its consumer reads it: a batch in a codec it has no
library for (`UnsupportedCodecError`), with a bad CRC or with corrupt compressed bytes raises out of
`getmany`/`getone`, and the next fetch returns the same batch, so every consumer of the partition
fails forever (and the records read before it in that fetch are skipped). Services we do not write
choose their producers and codecs, so one such batch must not stop the pipeline.

`install()` (run when `stream.kafka` is imported, so in every process of the project) replaces two
names in aiokafka's fetcher module, nothing else: each fetched partition's records keep their raw
bytes (`_RawRecords`), and when a batch fails to decode, `TolerantPartitionRecords` hands the
consumer one record in its place: at the batch's last offset, whose value is an `UndecodableBatch`
(the batch's bytes as stored, with the offsets it covers and the error). The consumer's position
then moves past the batch like after any record. Consumers that know the type dead-letter it with
reason `undecodable_batch` (the worker); to any other it is bytes that are no valid input, which
each already handles as bad input. Every such batch is logged and counted in
`omstream_undecodable_batches_total{topic}`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import aiokafka.consumer.fetcher as _fetcher
from aiokafka.record.memory_records import MemoryRecords

from stream.metrics import UNDECODABLE_BATCHES

log = logging.getLogger(__name__)

# Record batch header (message format v2): baseOffset int64, batchLength int32, partitionLeaderEpoch
# int32, magic int8, crc int32, attributes int16, lastOffsetDelta int32, firstTimestamp int64, ...
_LENGTH_AT, _MAGIC_AT, _LAST_DELTA_AT, _FIRST_TIMESTAMP_AT = 8, 16, 23, 27
_LOG_OVERHEAD = 12  # baseOffset and batchLength precede the length they count


class UndecodableBatch(bytes):
    """A record batch the consumer could not decode: its bytes as the broker stored them, and the
    offsets [first, last] of the records it held that no one has read."""

    first: int
    last: int
    error: str

    @classmethod
    def of(cls, raw: bytes, first: int, last: int, error: str) -> UndecodableBatch:
        batch = cls(raw)
        batch.first, batch.last, batch.error = first, last, error
        return batch

    @property
    def detail(self) -> str:
        return f"record batch of offsets {self.first}-{self.last} ({len(self)} bytes): {self.error}"


class _RawRecords:
    """aiokafka's MemoryRecords of one fetched partition, keeping the bytes they were read from."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._records = MemoryRecords(data)

    def size_in_bytes(self) -> int:
        return self._records.size_in_bytes()

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self) -> Any:
        return self._records.next_batch()


def _int(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at : at + size], "big", signed=True)


def _batch_at(data: bytes, offset: int) -> tuple[int, int, int, int, int]:
    """(start, end, base offset, last offset, timestamp) of the first complete batch in `data` holding
    records at or after `offset`; the end of data when none does."""
    start = 0
    while start + _FIRST_TIMESTAMP_AT + 8 <= len(data):
        end = start + _LOG_OVERHEAD + _int(data, start + _LENGTH_AT, 4)
        if end > len(data) or end <= start:
            break
        base = _int(data, start, 8)
        v2 = data[start + _MAGIC_AT] >= 2  # older formats' offset field is the wrapper's last offset
        last = base + _int(data, start + _LAST_DELTA_AT, 4) if v2 else base
        if last >= offset:
            return start, end, base, last, _int(data, start + _FIRST_TIMESTAMP_AT, 8) if v2 else -1
        start = end
    return len(data), len(data), offset, offset - 1, -1


class TolerantPartitionRecords(_fetcher.PartitionRecords):
    """aiokafka's records of one fetched partition; a batch that fails to decode becomes one record
    (see the module doc). aiokafka's own loop does everything else: each failure restarts it on the
    bytes after the failing batch."""

    def _unpack_records(self) -> Iterator[Any]:
        while True:
            try:
                yield from super()._unpack_records()
                return
            except Exception as error:  # a codec, CRC or parse error of aiokafka or of a codec library
                record = self._undecodable(error)
                if record is None:
                    return
                yield record

    _records: Any
    next_fetch_offset: int

    def _undecodable(self, error: Exception) -> Any:
        records = self._records
        if not isinstance(records, _RawRecords):
            raise TypeError("aiokafka's fetcher is not the one stream._fetch installed into") from error
        delivered = self.next_fetch_offset  # every record before it was
        start, end, base, last, timestamp = _batch_at(records.data, delivered)
        self._records = _RawRecords(records.data[end:])
        if last < delivered:  # no complete batch left: nothing to skip
            return None
        self.next_fetch_offset = last + 1
        batch = UndecodableBatch.of(records.data[start:end], max(base, delivered), last, _described(error))
        topic = self._tp.topic
        UNDECODABLE_BATCHES.labels(topic).inc()
        log.warning("skipped an undecodable %s of %s/%d", batch.detail, topic, self._tp.partition)
        return _fetcher.ConsumerRecord(
            topic, self._tp.partition, last, timestamp, 0, None, batch, None, -1, len(batch), ()
        )


def _described(error: Exception) -> str:
    name, text = type(error).__name__, str(error)
    return text if name in text else f"{name}: {text}"


def install() -> None:
    """Make every aiokafka consumer of this process survive undecodable record batches."""
    _fetcher.MemoryRecords = _RawRecords
    _fetcher.PartitionRecords = TolerantPartitionRecords
