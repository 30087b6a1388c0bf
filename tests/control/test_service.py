"""Pieces of the control service on a real broker: replay memory across restarts, commit tracking."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest
from aiokafka import TopicPartition

from control.client import publish
from control.results import CommandResult
from control.service import CommitTracker, SeenCommands, recall_admitted
from masters.protocol import Command, CommandRejected
from omstream.settings import Settings

NOW = datetime.datetime.now(datetime.UTC)


def command(expires_in: datetime.timedelta) -> Command:
    return Command(
        command_id=uuid.uuid4(),
        operator="demo",
        idc=["bj"],
        target="*",
        module="ping",
        issued_at=NOW - datetime.timedelta(minutes=1),
        expires_at=NOW + expires_in,
    )


def test_a_restarted_service_still_refuses_replays_of_unexpired_commands(
    settings: Settings, bootstrap: str
) -> None:
    live, expired = command(datetime.timedelta(minutes=5)), command(-datetime.timedelta(seconds=1))
    results = [
        CommandResult.about(live, stage="received", status="accepted"),
        CommandResult.about(live, stage="result", status="succeeded", idc="bj"),
        CommandResult.about(expired, stage="received", status="accepted"),
        CommandResult(command_id=str(uuid.uuid4()), stage="received", status="rejected", reason="unsigned"),
    ]
    asyncio.run(
        publish(bootstrap, settings.ops_results_topic, [r.model_dump_json().encode() for r in results])
    )
    seen = SeenCommands()
    assert asyncio.run(recall_admitted(bootstrap, settings.ops_results_topic, seen)) == 1
    with pytest.raises(CommandRejected, match="already received"):
        seen.add(live, NOW)
    seen.add(expired, NOW)  # its own expiry check rejects it; the replay memory need not keep it


def test_an_empty_results_topic_recalls_nothing(settings: Settings, bootstrap: str) -> None:
    assert asyncio.run(recall_admitted(bootstrap, settings.ops_results_topic, SeenCommands())) == 0


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
