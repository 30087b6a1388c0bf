"""The embedded broker's retention: record batches every reader is past are deleted from its store,
and nothing a reader still needs is: windows rebuilt after a worker is killed stay exact."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from omstream.embedded.retention import (
    Batch,
    LatestPerKey,
    ObjectStore,
    Plan,
    Retention,
    record_key,
    releasable,
)
from omstream.embedded.stack import free_port, topic_partitions
from omstream.embedded.store import BUCKET, Store, start_durable_broker
from omstream.embedded.supervisor import Supervisor
from omstream.settings import Settings
from stream.kafka import MAX_MESSAGE_BYTES, ensure_topics, read_every_partition
from tests.expected import TAOBAO_WINDOW, behavior_totals, distinct_valid_rows, funnel_daily, hourly_activity
from tests.omstream.embedded.test_up import TIMEZONE, halves, replay, report
from tests.up import omstream_up, services, until


def batches(*offsets_and_times: tuple[int, float]) -> list[Batch]:
    return [Batch(f"b{offset}", offset, 10, written) for offset, written in offsets_and_times]


def test_a_batch_goes_once_the_next_starts_at_or_below_what_readers_need_and_it_is_old_enough() -> None:
    held = batches((0, 1.0), (10, 2.0), (20, 3.0), (30, 4.0))
    assert [b.base_offset for b in releasable(held, keep_from=20, written_before=9.0)] == [0, 10]
    assert [b.base_offset for b in releasable(held, keep_from=19, written_before=9.0)] == [0]
    assert releasable(held, keep_from=0, written_before=9.0) == []
    # the last batch stays whatever the readers' position: where it ends is unknown
    assert [b.base_offset for b in releasable(held, keep_from=1_000, written_before=9.0)] == [0, 10, 20]
    # too recent: it and everything after it stay, so a partition never has holes
    assert [b.base_offset for b in releasable(held, keep_from=1_000, written_before=1.5)] == [0]
    late_first = batches((0, 5.0), (10, 1.0), (20, 1.0))
    assert releasable(late_first, keep_from=1_000, written_before=2.0) == []


def record(offset: int, key: bytes, timestamp_ms: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, timestamp_ms, 0, key, b"v", None, 1, 1, [])


def test_a_topic_read_for_its_latest_record_per_key_is_needed_from_the_oldest_latest_record() -> None:
    followed = LatestPerKey("t", lambda r: r.key)
    assert followed.keep_from() == 0
    for offset, key, at in [(0, b"a", 1_000), (1, b"b", 2_000), (2, b"a", 3_000), (3, b"a", 9_000)]:
        followed.learn(record(offset, key, at))
    assert followed.keep_from() == 1  # b's only record
    assert [r.offset for r in followed.stale(written_before=5.0)] == [1]
    followed.learn(record(4, b"b", 10_000))  # b written again (as retention does when it is stale)
    assert followed.keep_from() == 3
    assert followed.stale(written_before=5.0) == []


def pieces(path: Path, count: int) -> list[Path]:
    lines = path.read_text().splitlines(keepends=True)
    size = -(-len(lines) // count)
    paths = [path.with_suffix(f".{number}.csv") for number in range(count)]
    for number, piece in enumerate(paths):
        piece.write_text("".join(lines[number * size : (number + 1) * size]))
    return paths


def store_of(state: Path) -> ObjectStore:
    """The S3 endpoint of the running `up`'s store, from its command line."""
    argv = Path(f"/proc/{services(state)['store']['pid']}/cmdline").read_bytes().decode().split("\0")
    [port] = [arg.split("=", 1)[1] for arg in argv if arg.startswith("-s3.port=")]
    return ObjectStore(f"http://127.0.0.1:{port}")


def first_offsets(store: ObjectStore, topic: str, partitions: int) -> list[int]:
    return [min((b.base_offset for b in store.batches(topic, p)), default=0) for p in range(partitions)]


@pytest.mark.integration
def test_released_batches_leave_what_readers_need(
    tmp_path: Path, ordered_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMSTREAM_BROKER_RELEASE_S", "0")
    monkeypatch.setenv("OMSTREAM_RETENTION_EVERY_S", "1")
    state = tmp_path / "state"
    rows = distinct_valid_rows(ordered_file, TAOBAO_WINDOW)
    expected = {
        "behavior_totals": behavior_totals(rows),
        "hourly": hourly_activity(rows, TIMEZONE),
        "funnel_daily": funnel_daily(rows, TIMEZONE),
    }
    first, second = halves(ordered_file)

    def stored(figures: dict[str, Any]) -> dict[str, Any]:
        realtime = figures["realtime"]
        return {
            "behavior_totals": figures["behavior_totals"],
            "hourly": realtime["hourly"],
            "funnel_daily": realtime["funnel_daily"],
        }

    with omstream_up(state, tmp_path / "up.log", "--window-of", str(ordered_file)):
        store = store_of(state)
        # in pieces, so that each partition holds batches of every day (its last one is never released)
        for piece in pieces(first, 8):
            replay(state, piece)
        # the days closed in the first half are released: every partition starts later than offset 0
        until(lambda: all(first_offsets(store, "events", 4)), 120, "no events batch was released")
        # a new worker rebuilds the open windows from its checkpoint: the events there are kept
        doomed = services(state)["worker"]["pid"]
        os.kill(doomed, signal.SIGKILL)
        until(lambda: services(state)["worker"]["pid"] != doomed, 30, "the worker was not restarted")
        replay(state, second)
        until(lambda: stored(report(state)) == expected, 180, "the windows were not exact")


def volume_bytes(store_dir: Path) -> int:
    return sum(volume.stat().st_blocks * 512 for volume in store_dir.glob("*.dat"))


@pytest.mark.integration
def test_released_batches_give_their_disk_back(tmp_path: Path) -> None:
    """SeaweedFS frees a deleted object's disk only when its volume is compacted, and its own sweep
    is taken over by a maintenance worker that did not sweep within minutes: retention asks for it."""
    supervisor = Supervisor(tmp_path, "test", lambda _: None)
    try:
        store = Store.on_free_ports(tmp_path)
        store.wait_until_serving(supervisor.start(store.service()))
        objects = ObjectStore(store.endpoint)
        keys = [f"clusters/test/{number}.batch" for number in range(40)]
        for key in keys:
            url, body = f"{store.endpoint}/{BUCKET}/{key}", os.urandom(1 << 20)
            urllib.request.urlopen(urllib.request.Request(url, data=body, method="PUT"), timeout=30).close()
        written = volume_bytes(store.data_dir)
        for key in keys[4:]:
            objects.delete(key)

        def reclaimed() -> bool:  # once the volume server has told its master of the deletions
            ObjectStore(store.endpoint, store.master_url).reclaim()
            return volume_bytes(store.data_dir) < written / 2

        until(reclaimed, 60, "the deleted objects' disk was not given back")
    finally:
        supervisor.stop()


@pytest.mark.integration
def test_a_stale_latest_record_of_megabytes_is_written_again_and_older_batches_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition that falls idle leaves its last checkpoint, with its open windows, as the oldest
    latest record of the checkpoints topic: written again at the end, it stops holding every batch.
    Under load the broker answers a reader's first fetch of such records after its first poll: that
    is not the end of the topic (taken for it, retention released nothing of the topic, ever)."""
    getmany, highwater = AIOKafkaConsumer.getmany, AIOKafkaConsumer.highwater
    polled: set[int] = set()
    answered: set[int] = set()  # consumers whose fetch the broker has answered

    async def late_first_fetch(self: AIOKafkaConsumer, *partitions: Any, **options: Any) -> Any:
        if id(self) not in polled:
            polled.add(id(self))
            await asyncio.sleep(options.get("timeout_ms", 0) / 1000)
            return {}  # the poll timed out before the broker's first answer
        answered.add(id(self))
        return await getmany(self, *partitions, **options)

    def unknown_until_answered(self: AIOKafkaConsumer, partition: TopicPartition) -> int | None:
        return highwater(self, partition) if id(self) in answered else None

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", late_first_fetch)
    monkeypatch.setattr(AIOKafkaConsumer, "highwater", unknown_until_answered)
    supervisor = Supervisor(tmp_path, "test", lambda _: None)
    try:
        store, bootstrap = start_durable_broker(supervisor, tmp_path, free_port())
        topic = "checkpoints"
        asyncio.run(ensure_topics(bootstrap, {topic: 1}))
        idle = os.urandom(12 << 20)
        asyncio.run(produce(bootstrap, topic, [(b"idle", idle)]))
        time.sleep(1.5)  # the idle partition's record is now older than the release delay
        asyncio.run(produce(bootstrap, topic, [(b"busy", str(n).encode()) for n in range(3)]))
        plan = Plan({topic: 1}, {}, {topic: record_key}, {})
        retention = Retention(bootstrap, ObjectStore(store.endpoint), plan, release_s=1.0)
        asyncio.run(retention.run_pass())  # writes the idle record again
        asyncio.run(retention.run_pass())  # releases what is below it
        assert first_offsets(ObjectStore(store.endpoint), topic, 1) == [3]  # the latest "busy" record
        assert asyncio.run(latest_values(bootstrap, topic)) == {b"idle": idle, b"busy": b"2"}
    finally:
        supervisor.stop()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def latest_values(bootstrap: str, topic: str) -> dict[bytes | None, bytes | None]:
    found: dict[bytes | None, bytes | None] = {}
    async for record in read_every_partition(bootstrap, topic):
        found[record.key] = record.value
    return found


def test_every_topic_of_the_stack_has_a_rule_for_what_its_readers_need() -> None:
    """A topic without one is never released: the broker's disk would grow with it for ever."""
    settings = Settings()
    plan = Plan.of(settings, topic_partitions(settings))
    ruled = plan.readers.keys() | plan.latest_per_key.keys() | plan.by_age.keys()
    assert ruled == topic_partitions(settings).keys()
    assert plan.by_age[settings.alerts_topic] == 7 * 86_400
