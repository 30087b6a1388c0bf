"""The raw sink stores each distinct event exactly once: replays and a SIGKILLed worker included."""

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import clickhouse
from omstream.demo import produced_targets, replay_file
from omstream.settings import Settings
from omstream.stack import committed_offsets, wait_until_consumed, worker_process
from stream.emitter import EmitReport
from stream.replay import Pacer
from stream.sources.generator import generate_csv
from tests.expected import behavior_totals, distinct_valid_rows

pytestmark = pytest.mark.integration


def stored_totals(settings: Settings) -> tuple[dict[str, int], dict[str, int]]:
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        totals = {row["behavior"]: row["events"] for row in clickhouse.query_rows(client, "behavior_totals")}
        dead = {
            row["reason"]: row["rejected"] for row in clickhouse.query_rows(client, "dead_letters_by_reason")
        }
    finally:
        client.close()
    return totals, dead


def replay(path: Path, settings: Settings, bootstrap: str, pacer: Pacer | None = None) -> EmitReport:
    return asyncio.run(replay_file(path, settings, bootstrap, settings.pack_size, pacer))


@pytest.fixture
def dirty_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    generate_csv(path, events=30_000, seed=3, dirty=True)
    return path


def test_replaying_a_file_twice_stores_each_distinct_event_once(
    dirty_file: Path, settings: Settings, bootstrap: str
) -> None:
    expected = behavior_totals(distinct_valid_rows(dirty_file, settings.accept_range))
    with worker_process(settings, bootstrap) as worker:
        for _ in range(2):
            emitted = replay(dirty_file, settings, bootstrap)
            wait_until_consumed(
                bootstrap, settings.consumer_group, produced_targets(settings, emitted), 120, worker
            )
    totals, dead = stored_totals(settings)
    assert totals == {name: count for name, count in expected.items() if count}
    assert sum(emitted.rejected.values()) > 0
    assert set(dead) == set(emitted.rejected)


def test_a_worker_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    dirty_file: Path, settings: Settings, bootstrap: str
) -> None:
    expected = behavior_totals(distinct_valid_rows(dirty_file, settings.accept_range))
    small_batches = settings.model_copy(update={"pack_size": 20, "sink_batch_messages": 25})
    with worker_process(small_batches, bootstrap, name="doomed") as doomed:
        killer = threading.Thread(target=kill_once_storing, args=(doomed.pid, settings, bootstrap))
        killer.start()
        emitted = replay(dirty_file, small_batches, bootstrap, Pacer(rate=10_000))
        killer.join()
        assert doomed.wait(5) == -signal.SIGKILL
    with worker_process(small_batches, bootstrap, name="restarted") as worker:
        wait_until_consumed(
            bootstrap, settings.consumer_group, produced_targets(settings, emitted), 120, worker
        )
    totals, _ = stored_totals(settings)
    assert totals == {name: count for name, count in expected.items() if count}


def kill_once_storing(pid: int, settings: Settings, bootstrap: str) -> None:
    """SIGKILL the worker as soon as it has committed part of the stream (so some work is in flight)."""
    partitions = [(settings.events_topic, p) for p in range(settings.events_partitions)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(asyncio.run(committed_offsets(bootstrap, settings.consumer_group, partitions)).values()) > 20:
            break
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
