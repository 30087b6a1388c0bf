"""Record batches aiokafka cannot decode, read through the fetch layer every consumer of the project
uses (`stream._fetch`, installed by `stream.kafka`): each becomes one record in its place, the records
around it are delivered, and the position moves past it."""

from __future__ import annotations

import subprocess
import sys

import aiokafka.codec
import aiokafka.consumer.fetcher as fetcher
import pytest
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

import stream.kafka  # noqa: F401  # installs the fetch layer, as in every service
from stream._fetch import UndecodableBatch
from tests.record_batches import GZIP, LZ4, SNAPPY, ZSTD, bad_crc, corrupt_gzip, record_batch, unknown_codec


def read(data: bytes, fetch_offset: int = 0) -> tuple[list[tuple[int, bytes]], int]:
    """The records a consumer gets from one fetch of `data`, and where its position goes next."""
    records = fetcher.PartitionRecords(
        TopicPartition("events", 0), fetcher.MemoryRecords(data), [], fetch_offset, None, None, True, 0
    )
    return [(record.offset, record.value) for record in records], records.next_fetch_offset


def undecodable_count() -> float:
    return REGISTRY.get_sample_value("omstream_undecodable_batches_total", {"topic": "events"}) or 0.0


def test_each_undecodable_batch_becomes_one_record_and_the_others_are_delivered() -> None:
    before = undecodable_count()
    data = b"".join(
        [
            bytes(record_batch([b"a", b"b"], 0)),
            unknown_codec([b"x", b"y", b"z"], 2),
            bytes(record_batch([b"c"], 5)),
            corrupt_gzip([b"q"] * 3, 6),
            bad_crc([b"r"], 9),
            bytes(record_batch([b"d"], 10)),
        ]
    )
    records, position = read(data)
    assert [(offset, value) for offset, value in records if type(value) is bytes] == [
        (0, b"a"),
        (1, b"b"),
        (5, b"c"),
        (10, b"d"),
    ]
    skipped = {offset: value for offset, value in records if isinstance(value, UndecodableBatch)}
    assert sorted(skipped) == [4, 8, 9]  # each batch's last offset: a commit after it passes the batch
    assert [(batch.first, batch.last) for batch in skipped.values()] == [(2, 4), (6, 8), (9, 9)]
    assert "Unknown compression codec 0x05" in skipped[4].error
    assert "CRC" in skipped[8].error and "Invalid CRC" in skipped[9].error
    assert bytes(skipped[4]) == unknown_codec([b"x", b"y", b"z"], 2)  # the batch as stored, to keep
    assert position == 11
    assert undecodable_count() == before + 3


def test_a_fetch_starting_inside_an_undecodable_batch_skips_only_what_is_left_of_it() -> None:
    records, position = read(corrupt_gzip([b"q"] * 4, 10) + bytes(record_batch([b"e"], 14)), fetch_offset=12)
    assert [(offset, getattr(value, "first", None)) for offset, value in records] == [(13, 12), (14, None)]
    assert position == 15


def test_a_codec_whose_library_is_missing_is_an_undecodable_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without cramjam (aiokafka's optional codec library)."""
    lz4 = bytes(record_batch([b"l1", b"l2"], 0, codec=LZ4))
    monkeypatch.setattr(aiokafka.codec, "cramjam", None)
    [(offset, batch)], _ = read(lz4)
    assert offset == 1 and isinstance(batch, UndecodableBatch)
    assert "lz4" in batch.error.lower()


def test_every_kafka_codec_is_installed() -> None:
    """The project's dependencies bring aiokafka's codec libraries (snappy, lz4, zstd; gzip is Python's)."""
    assert aiokafka.codec.has_snappy() and aiokafka.codec.has_lz4() and aiokafka.codec.has_zstd()
    for codec in (GZIP, SNAPPY, LZ4, ZSTD):
        records, _ = read(bytes(record_batch([b"v1", b"v2"], 0, codec=codec)))
        assert records == [(0, b"v1"), (1, b"v2")], codec


@pytest.mark.parametrize(
    "module", ["stream.sink", "stream.worker", "control.service", "control.client", "omstream.cli"]
)
def test_every_consumer_of_the_project_reads_through_the_tolerant_fetch(module: str) -> None:
    """Each service's or tool's module, imported alone in a fresh interpreter, installs it."""
    check = (
        f"import {module}, aiokafka.consumer.fetcher as fetcher; "
        "assert fetcher.PartitionRecords.__name__ == 'TolerantPartitionRecords'"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=120)
