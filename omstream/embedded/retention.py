"""Releasing what the embedded broker no longer needs (`omstream retention`, run by `omstream up`).

Tansu keeps each produced record batch as one object of the store,
`clusters/<cluster>/topics/<topic>/partitions/<partition:010>/records/<base offset:020>.batch`, and
has no retention of its own. A fetch lists every batch object of its partition and reads those at or
after its offset (or the one holding it); ListOffsets(earliest) is the oldest object. So deleting the
batches that end below every reader's position through the S3 API leaves every read of a reader at or
past that position as it was. Measured here: listing a partition costs ~25-75 µs per object, paid by
every fetch, so what the broker keeps also slows every fetch; keeping only what is needed keeps both
its disk and its fetches flat.

What each topic's readers still need, from `keep_from` (the lowest offset still needed) per partition:
- topics read by consumer groups (events: the workers, whose commits stay at the first event of an
  open window, and the sink; dead letters, window rows and results: the sink; commands: the control
  service): the lowest offset those groups committed. A group with no commit keeps everything.
- topics read from the start for their latest record per key (checkpoints; processed, keyed by stage,
  topic and partition): the oldest such latest record. A latest record older than the release delay is
  written again at the end (its readers keep the highest version or offset, so a copy changes nothing)
  so that a key written rarely does not hold the topic.
- admissions (`ops.admitted`), read from the start by the control replicas: a record is needed until
  its command expired and the replay memory forgot it (twice the longest command lifetime).
- alerts, read from the start by a restarted detector for the alerts of the hours it resumes from,
  and by users as a feed: kept for the accepted range's days (`OMSTREAM_ACCEPT_DAYS_BACK`).
A batch is deleted when it ends below `keep_from` and was written more than
`OMSTREAM_BROKER_RELEASE_S` ago.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from omstream.embedded.store import BUCKET
from omstream.settings import DAY_SECONDS, Settings
from stream.kafka import MAX_MESSAGE_BYTES, kafka_options, read_to_end

log = logging.getLogger("omstream.retention")

CLUSTER = "tansu_cluster"  # Tansu's default cluster id, the first part of every object's name
_S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"

RELEASED = Counter(
    "omstream_store_batches_released_total", "Record batches deleted from the store", ["topic"]
)
RELEASED_BYTES = Counter("omstream_store_bytes_released_total", "Bytes of record batches deleted", ["topic"])
KEPT = Gauge("omstream_store_batches", "Record batches the store holds", ["topic"])
KEPT_BYTES = Gauge("omstream_store_bytes", "Bytes of record batches the store holds", ["topic"])
REWRITTEN = Counter(
    "omstream_store_latest_rewritten_total", "Latest records written again so older ones can go", ["topic"]
)


_RECLAIM_EVERY_S = 60.0
_GARBAGE_SHARE = 0.3


@dataclass(frozen=True)
class Batch:
    key: str  # the object's name
    base_offset: int
    size: int
    written: float  # epoch seconds


class ObjectStore:
    """The few S3 calls retention needs, on the embedded store (which needs no signature), and the
    call that gives the disk of deleted objects back (`master_url`: the store's master)."""

    def __init__(self, endpoint: str, master_url: str = "", bucket: str = BUCKET) -> None:
        self._base = f"{endpoint.rstrip('/')}/{bucket}"
        self._master = master_url.rstrip("/")
        self._vacuumed = 0.0

    def reclaim(self) -> None:
        """Compact the volumes whose deleted objects are at least `_GARBAGE_SHARE` of them, at most
        every `_RECLAIM_EVERY_S`. A deleted object frees its disk only then, and SeaweedFS's own
        sweep is taken over by its maintenance worker, which did not sweep within minutes here."""
        if not self._master or time.monotonic() - self._vacuumed < _RECLAIM_EVERY_S:
            return
        self._vacuumed = time.monotonic()
        query = urllib.parse.urlencode({"garbageThreshold": _GARBAGE_SHARE})
        with urllib.request.urlopen(f"{self._master}/vol/vacuum?{query}", timeout=300):
            pass

    def batches(self, topic: str, partition: int) -> list[Batch]:
        """The partition's record batches, by base offset."""
        prefix = f"clusters/{CLUSTER}/topics/{topic}/partitions/{partition:0>10}/records/"
        found = [self._batch(entry) for entry in self._list(prefix)]
        return sorted(found, key=lambda batch: batch.base_offset)

    def delete(self, key: str) -> None:
        request = urllib.request.Request(f"{self._base}/{urllib.parse.quote(key)}", method="DELETE")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def _list(self, prefix: str) -> Iterator[ElementTree.Element]:
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix} | ({"continuation-token": token} if token else {})
            with urllib.request.urlopen(f"{self._base}?{urllib.parse.urlencode(query)}", timeout=60) as reply:
                page = ElementTree.fromstring(reply.read())
            yield from page.iter(f"{_S3}Contents")
            token = page.findtext(f"{_S3}NextContinuationToken") or ""
            if not token:
                return

    @staticmethod
    def _batch(entry: ElementTree.Element) -> Batch:
        key = entry.findtext(f"{_S3}Key") or ""
        written = datetime.fromisoformat((entry.findtext(f"{_S3}LastModified") or "").replace("Z", "+00:00"))
        base_offset = int(key.rsplit("/", 1)[1].removesuffix(".batch"))
        return Batch(key, base_offset, int(entry.findtext(f"{_S3}Size") or 0), written.timestamp())


def releasable(batches: list[Batch], keep_from: int, written_before: float) -> list[Batch]:
    """The first batches that end below `keep_from` (the next one starts at or below it) and are old
    enough: a prefix, so a partition never has holes; the last batch is never one (where it ends is
    unknown without reading it)."""
    pairs = itertools.takewhile(
        lambda pair: pair[1].base_offset <= keep_from and pair[0].written < written_before,
        itertools.pairwise(batches),
    )
    return [batch for batch, _ in pairs]


@dataclass
class LatestPerKey:
    """Follows a one-partition topic whose readers keep the latest record per key."""

    topic: str
    key_of: Callable[[ConsumerRecord[bytes, bytes]], Any]
    latest: dict[Any, ConsumerRecord[bytes, bytes]] = field(default_factory=dict)
    read_to: int = 0

    def learn(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.latest[self.key_of(record)] = record
        self.read_to = record.offset + 1

    def keep_from(self) -> int:
        return min((record.offset for record in self.latest.values()), default=self.read_to)

    def stale(self, written_before: float) -> list[ConsumerRecord[bytes, bytes]]:
        """Latest records older than `written_before` (Kafka timestamps are in ms)."""
        return [record for record in self.latest.values() if record.timestamp < written_before * 1000]


def processed_key(record: ConsumerRecord[bytes, bytes]) -> tuple[str, str, int]:
    body = orjson.loads(record.value or b"{}")
    return (str(body["stage"]), str(body["topic"]), int(body["partition"]))


def record_key(record: ConsumerRecord[bytes, bytes]) -> bytes | None:
    return record.key


@dataclass(frozen=True)
class Plan:
    """Who reads what: the topics, their partitions, and how their `keep_from` is found."""

    partitions: dict[str, int]
    readers: dict[str, list[str]]  # topic -> consumer groups
    latest_per_key: dict[str, Callable[[ConsumerRecord[bytes, bytes]], Any]]
    by_age: dict[str, float]  # topic -> seconds a record is needed for, whoever read it

    @classmethod
    def of(cls, settings: Settings, partitions: dict[str, int]) -> Plan:
        return cls(
            partitions=partitions,
            readers={
                settings.events_topic: [settings.consumer_group, settings.sink_group],
                settings.dlq_topic: [settings.sink_group],
                settings.windows_topic: [settings.sink_group],
                settings.ops_results_topic: [settings.sink_group],
                settings.ops_commands_topic: [settings.control_group],
            },
            latest_per_key={settings.checkpoints_topic: record_key, settings.processed_topic: processed_key},
            by_age={
                settings.ops_admitted_topic: 2.0 * settings.ops_max_lifetime_s,
                # the detector reads back a few hours of alerts; users may want the accepted range's
                settings.alerts_topic: settings.accept_days_back * DAY_SECONDS,
            },
        )


class Retention:
    """One pass at a time: find what each partition still needs, delete the batches below it."""

    def __init__(self, bootstrap: str, store: ObjectStore, plan: Plan, release_s: float) -> None:
        self._bootstrap = bootstrap
        self._store = store
        self._plan = plan
        self._release_s = release_s
        self._followed = {topic: LatestPerKey(topic, key_of) for topic, key_of in plan.latest_per_key.items()}

    async def run_pass(self) -> int:
        """Delete what no reader needs; returns how many batches went."""
        now = time.time()
        keep_from = await self._group_positions()
        for topic, followed in self._followed.items():
            await self._follow(followed, now)
            keep_from[(topic, 0)] = followed.keep_from()
        released = 0
        for topic, partitions in self._plan.partitions.items():
            age = self._plan.by_age.get(topic)
            written_before = now - max(age or 0.0, self._release_s)
            kept: list[Batch] = []
            for partition in range(partitions):
                bound = keep_from.get((topic, partition), 0) if age is None else 1 << 62
                batches = await asyncio.to_thread(self._store.batches, topic, partition)
                doomed = releasable(batches, bound, written_before)
                await asyncio.to_thread(self._delete, topic, doomed)
                released += len(doomed)
                kept += batches[len(doomed) :]  # the released ones are a prefix
            KEPT.labels(topic).set(len(kept))
            KEPT_BYTES.labels(topic).set(sum(batch.size for batch in kept))
        if released:
            await asyncio.to_thread(self._store.reclaim)
        return released

    def _delete(self, topic: str, batches: list[Batch]) -> None:
        for batch in batches:
            self._store.delete(batch.key)
            RELEASED.labels(topic).inc()
            RELEASED_BYTES.labels(topic).inc(batch.size)

    async def _group_positions(self) -> dict[tuple[str, int], int]:
        """The lowest offset committed by every group reading each partition (absent: keep all)."""
        admin = AIOKafkaAdminClient(**kafka_options(self._bootstrap))
        await admin.start()
        try:
            positions: dict[tuple[str, int], int] = {}
            for topic, groups in self._plan.readers.items():
                for partition in range(self._plan.partitions[topic]):
                    committed = []
                    for group in groups:
                        offsets = await admin.list_consumer_group_offsets(
                            group, partitions=[TopicPartition(topic, partition)]
                        )
                        found = offsets.get(TopicPartition(topic, partition))
                        committed.append(found.offset if found is not None and found.offset >= 0 else 0)
                    positions[(topic, partition)] = min(committed)
            return positions
        finally:
            await admin.close()

    async def _follow(self, followed: LatestPerKey, now: float) -> None:
        """Read what was written since the last pass, then write again the latest records that would
        hold the topic longer than the release delay."""
        async for record in read_to_end(self._bootstrap, followed.topic, followed.read_to):
            followed.learn(record)
        stale = followed.stale(now - self._release_s)
        if stale and len(stale) < len(followed.latest):  # when all are stale, nothing newer needs room
            await self._write_again(followed.topic, stale)

    async def _write_again(self, topic: str, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        # a checkpoint carries its partition's open windows: tens of MB on a busy one
        producer = AIOKafkaProducer(**kafka_options(self._bootstrap), max_request_size=MAX_MESSAGE_BYTES)
        await producer.start()
        try:
            for record in records:
                await producer.send_and_wait(
                    topic, value=record.value, key=record.key, partition=0, headers=list(record.headers)
                )
            REWRITTEN.labels(topic).inc(len(records))
        finally:
            await producer.stop()


async def run_retention(
    bootstrap: str, store: ObjectStore, plan: Plan, release_s: float, every_s: float
) -> None:
    """Passes every `every_s` seconds, for ever; a failed pass is logged and the next one tries again."""
    retention = Retention(bootstrap, store, plan, release_s)
    while True:
        try:
            released = await retention.run_pass()
            log.info("released %d record batches", released)
        except (OSError, KafkaError) as error:
            log.warning("retention pass failed (the next one tries again): %s", error)
        await asyncio.sleep(every_s)
