"""The embedded broker's store on a bad day: its disk full. Producers get errors, `up` says so in one
line, and everything the broker acknowledged before can still be read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from omstream.embedded.stack import free_port
from omstream.embedded.store import STORE_DIR, DiskWatch, start_durable_broker
from omstream.embedded.supervisor import Supervisor
from stream.kafka import ensure_topics

RECORD = 50_000  # bytes: a few hundred fill the small disk


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[None]:
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)])
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


async def fill(bootstrap: str, records: int) -> tuple[dict[int, bytes], list[str]]:
    """Send records one at a time: what was acknowledged (by offset) and the errors."""
    await ensure_topics(bootstrap, {"t": 1})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await producer.start()
    acknowledged: dict[int, bytes] = {}
    errors: list[str] = []
    try:
        for number in range(records):
            value = number.to_bytes(4, "big") * (RECORD // 4)
            try:
                metadata = await producer.send_and_wait("t", value, partition=0)
                acknowledged[metadata.offset] = value
            except KafkaError as error:
                errors.append(type(error).__name__)
                if len(errors) >= 3:
                    break
    finally:
        await producer.stop()
    return acknowledged, errors


async def read_all(bootstrap: str, expected: int) -> dict[int, bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    read: dict[int, bytes] = {}
    try:
        partition = TopicPartition("t", 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        for _ in range(120):
            for record in (await consumer.getmany(partition, timeout_ms=1000)).get(partition, []):
                read[record.offset] = record.value or b""
            if len(read) >= expected:
                break
    finally:
        await consumer.stop()
    return read


@contextlib.contextmanager
def store_and_broker(state: Path, notes: list[str]) -> Iterator[str]:
    """The store and a broker on it, as `up` starts them; both killed (SIGKILL) after the block."""
    supervisor = Supervisor(state, "test", notes.append)
    try:
        _, bootstrap = start_durable_broker(supervisor, state, free_port())
        yield bootstrap
    finally:
        for pid in [supervised.process.pid for supervised in supervisor._services]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        supervisor.stop()


@pytest.mark.integration
def test_a_full_disk_refuses_events_says_so_and_keeps_what_it_acknowledged(tmp_path: Path) -> None:
    state = tmp_path / "state"
    notes: list[str] = []
    with small_disk(state / STORE_DIR, megabytes=12), store_and_broker(state, notes) as bootstrap:
        acknowledged, errors = asyncio.run(fill(bootstrap, records=400))
        DiskWatch(state / STORE_DIR, notes.append).check()
        read = asyncio.run(read_all(bootstrap, len(acknowledged)))
    assert errors, "the full disk took every record"
    assert any(note.startswith("disk nearly full: ") for note in notes), notes
    assert {offset: read.get(offset) for offset in acknowledged} == acknowledged


@pytest.mark.integration
@pytest.mark.soak  # a limitation of SeaweedFS on record, not a guard of our code: out of the CI run
@pytest.mark.xfail(
    strict=True,
    reason="SeaweedFS restarted after its disk filled never finds its volume again (`volume 1 not found`), "
    "even with room made: what the broker acknowledged before is unreadable",
)
def test_what_was_acknowledged_before_the_disk_filled_survives_a_restart_of_the_store(tmp_path: Path) -> None:
    state = tmp_path / "state"
    notes: list[str] = []
    with small_disk(state / STORE_DIR, megabytes=12):
        with store_and_broker(state, notes) as bootstrap:
            acknowledged, _ = asyncio.run(fill(bootstrap, records=400))
        subprocess.run(["mount", "-o", "remount,size=1024m", str(state / STORE_DIR)], check=True)
        with store_and_broker(state, notes) as bootstrap:
            read = asyncio.run(read_all(bootstrap, len(acknowledged)))
    assert {offset: read.get(offset) for offset in acknowledged} == acknowledged
