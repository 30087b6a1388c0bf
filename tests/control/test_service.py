"""Pieces of the control service on a real broker: the replay memory replicas share, commit tracking."""

from __future__ import annotations

import asyncio
import base64
import datetime
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY

from control.admitted import Admitted, AdmittedCommands, AdmittedTopic
from control.service import CommitTracker
from control.signing import SIGNATURE_HEADER, Purpose, signed_headers
from masters.protocol import Command
from omstream.settings import Settings

NOW = datetime.datetime.now(datetime.UTC)
HOUR = datetime.timedelta(hours=1)


def command() -> Command:
    return Command(
        command_id=uuid.uuid4(),
        operator="demo",
        idc=["bj", "sh"],
        target="*",
        module="ping",
        issued_at=NOW - datetime.timedelta(minutes=1),
        expires_at=NOW + datetime.timedelta(minutes=5),
    )


def unreadable(topic: str) -> float:
    return REGISTRY.get_sample_value("omstream_control_unreadable_records_total", {"topic": topic}) or 0.0


@pytest.mark.integration
def test_a_replica_learns_what_others_admitted_and_skips_what_is_not_an_admission(
    settings: Settings, bootstrap: str
) -> None:
    topic = settings.ops_admitted_topic
    key = Ed25519PrivateKey.generate()
    first, second = command(), command()
    skipped_before = unreadable(topic)

    async def scenario() -> tuple[int, int, AdmittedCommands]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        writer_memory, reader_memory = AdmittedCommands(HOUR), AdmittedCommands(HOUR)
        writer = AdmittedTopic(bootstrap, topic, key, writer_memory, producer)
        reader = AdmittedTopic(bootstrap, topic, key, reader_memory, producer)
        try:
            entry = writer_memory.admit(first, 0, 7, NOW)
            await writer.write(entry)
            await writer.write(writer_memory.finished(entry.command_id, "bj"))
            forged = Admitted(
                command_id=str(second.command_id), partition=0, offset=9, expires_at=NOW, idcs=["bj"]
            )
            value = forged.model_dump_json().encode()
            for garbage, headers in [
                (b"not json", []),
                (b"[" * 50_000 + b"]" * 50_000, []),
                (b'{"command_id": "x"}', signed_headers(key, Purpose.ADMITTED, b'{"command_id": "x"}')),
                (value, []),  # unsigned
                (value, signed_headers(Ed25519PrivateKey.generate(), Purpose.ADMITTED, value)),
                (value, signed_headers(key, Purpose.RESULT, value)),  # signed, but for the results topic
                (value, [(SIGNATURE_HEADER, base64.b64encode(b"x" * 64))]),
            ]:
                await producer.send_and_wait(topic, garbage, headers=headers)
            learnt = await reader.catch_up()
            await writer.write(writer_memory.admit(second, 0, 8, NOW))
            learnt_later = await reader.catch_up()  # from where it stopped, to the new end
        finally:
            await producer.stop()
        return learnt, learnt_later, reader_memory

    learnt, learnt_later, memory = asyncio.run(scenario())
    assert (learnt, learnt_later) == (2, 1)
    known = memory.get(first)
    assert known is not None and known.at(0, 7) and known.done == ["bj"] and known.pending() == ["sh"]
    second_known = memory.get(second)
    assert second_known is not None and second_known.at(0, 8)
    assert unreadable(topic) - skipped_before == 7


@pytest.mark.integration
def test_an_empty_topic_teaches_nothing(settings: Settings, bootstrap: str) -> None:
    async def scenario() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        reader = AdmittedTopic(
            bootstrap,
            settings.ops_admitted_topic,
            Ed25519PrivateKey.generate(),
            AdmittedCommands(HOUR),
            producer,
        )
        try:
            return await reader.catch_up()
        finally:
            await producer.stop()

    assert asyncio.run(scenario()) == 0


def test_commits_stop_at_the_oldest_command_in_flight() -> None:
    tracker, partition = CommitTracker(), TopicPartition("ops.commands", 0)
    for offset in (10, 11, 12):
        tracker.started(partition, offset)
    tracker.finished(partition, 11)
    assert tracker.committable() == {}
    tracker.finished(partition, 10)
    assert tracker.committable() == {partition: 12}
    tracker.finished(partition, 12)
    assert tracker.committable() == {partition: 13}
    assert tracker.committable() == {}
