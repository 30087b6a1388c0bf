"""Scaling out as docker-compose does it (`--scale worker=3` over a 6-partition events topic), here
with the embedded broker (real Tansu and chDB): one worker SIGKILLed mid-stream, and ClickHouse still
holds exactly the batch computation's results, which are what a single worker stores."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import pytest

from omstream.embedded.demo import produced_targets
from omstream.embedded.stack import pipeline, wait_until_processed
from omstream.settings import Settings
from stream.replay import Pacer
from tests.pipeline import (
    SMALL_TAKES,
    assert_exact,
    kill_when_processed,
    replay,
    wait_for_members,
)

pytestmark = pytest.mark.integration

PARTITIONS = 6
WORKERS = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={**SMALL_TAKES, "events_partitions": PARTITIONS})


def test_three_workers_on_six_partitions_one_killed_mid_stream_store_exact_results(
    ordered_file: Path, settings: Settings, bootstrap: str
) -> None:
    with pipeline(settings, bootstrap, workers=WORKERS) as services:
        sink, doomed, *survivors = services
        # all three share the partitions before any event flows, so the one killed holds some
        asyncio.run(wait_for_members(bootstrap, settings.consumer_group, WORKERS, timeout=30))
        killer = threading.Thread(target=kill_when_processed, args=(doomed.pid, settings, bootstrap, 400))
        killer.start()
        emitted = replay(ordered_file, settings, bootstrap, Pacer(rate=10_000))
        killer.join()
        assert doomed.wait(5) == -signal.SIGKILL
        # the survivors take over the dead worker's partitions from its last checkpoints
        targets = produced_targets(settings, emitted)
        wait_until_processed(settings, bootstrap, targets, 120, [sink, *survivors])
    assert_exact(settings, ordered_file)
