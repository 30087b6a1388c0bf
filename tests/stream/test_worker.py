"""The worker against independent computations, with real Tansu and chDB: raw events stored once,
real-time windows exact, through replays, SIGKILLs, two workers and late input."""

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from omstream.embedded.demo import produced_targets
from omstream.embedded.stack import (
    pipeline,
    service_env,
    service_process,
    topic_partitions,
    wait_until_processed,
    worker_process,
)
from omstream.embedded.supervisor import stop_process
from omstream.settings import Settings
from stream.checkpoints import start_epoch
from stream.emitter import EmitReport, Emitter
from stream.events import Event, encode_events
from stream.kafka import Partitioner, ensure_topics
from stream.replay import Pacer
from stream.results import decode_results
from stream.sources.taobao import parse_line
from stream.windows import WindowRow
from tests.conftest import broker_for_test
from tests.expected import behavior_totals, hourly_activity
from tests.pipeline import (
    SMALL_TAKES,
    assert_exact,
    expected,
    kill_when_processed,
    replay,
    stored,
    wait_for_members,
)

pytestmark = pytest.mark.integration


def test_replaying_a_file_twice_changes_nothing(
    ordered_file: Path, settings: Settings, bootstrap: str
) -> None:
    with pipeline(settings, bootstrap) as services:
        for _ in range(2):
            emitted = replay(ordered_file, settings, bootstrap)
            wait_until_processed(settings, bootstrap, produced_targets(settings, emitted), 120, services)
    report = assert_exact(settings, ordered_file)
    # the second pass is behind the windows' grace: stored once, and dead-lettered as late for the windows
    rejected = {row["reason"]: row["rejected"] for row in report.dead_letters if row["source"] == "replay"}
    assert rejected == {reason: 2 * count for reason, count in emitted.rejected.items()}
    late = [row["rejected"] for row in report.dead_letters if row["reason"] == "late"]
    assert late == [second_pass_late(ordered_file, settings)]


def second_pass_late(path: Path, settings: Settings) -> int:
    """Events of a repeated replay that are behind their partition's watermark by more than the grace
    (the rest are exact duplicates of counted events, so counted once and not late)."""
    sent = [
        row
        for row in (parse_line(line, settings.accept_range) for line in path.read_text().splitlines())
        if isinstance(row, Event)
    ]
    partition_of = Partitioner(settings.events_partitions)
    watermark: dict[int, int] = {}
    for event in sent:
        partition = partition_of(event.user_id)
        watermark[partition] = max(watermark.get(partition, 0), event.ts)
    return sum(event.ts < watermark[partition_of(event.user_id)] - settings.grace_seconds for event in sent)


@pytest.mark.parametrize("kill_after_messages", [30, 400])
def test_a_worker_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    ordered_file: Path, settings: Settings, bootstrap: str, kill_after_messages: int
) -> None:
    small = settings.model_copy(update=SMALL_TAKES)
    with (
        service_process(small, bootstrap, "sink", "sink") as sink,
        worker_process(small, bootstrap, "doomed") as doomed,
    ):
        killer = threading.Thread(
            target=kill_when_processed, args=(doomed.pid, small, bootstrap, kill_after_messages)
        )
        killer.start()
        emitted = replay(ordered_file, small, bootstrap, Pacer(rate=15_000))
        killer.join()
        assert doomed.wait(5) == -signal.SIGKILL
        with worker_process(small, bootstrap, name="restarted") as worker:
            wait_until_processed(small, bootstrap, produced_targets(small, emitted), 120, [sink, worker])
    assert_exact(small, ordered_file)


def test_two_workers_sharing_the_partitions_give_the_same_results_as_one(
    ordered_file: Path, settings: Settings, bootstrap: str
) -> None:
    with pipeline(settings, bootstrap, workers=2) as services:
        emitted = replay(ordered_file, settings, bootstrap, Pacer(rate=20_000))
        wait_until_processed(settings, bootstrap, produced_targets(settings, emitted), 120, services)
    assert_exact(settings, ordered_file)


def test_events_shuffled_within_the_grace_are_exact_and_later_ones_dead_lettered(
    ordered_file: Path, settings: Settings, bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(5)
    lines = ordered_file.read_text().splitlines()
    jittered = sorted(lines, key=lambda line: _ts(line) + rng.randrange(300))  # out of order by < grace
    end = max(
        row.ts
        for row in (parse_line(line, settings.accept_range) for line in lines)
        if isinstance(row, Event)
    )
    late = [f"{900_000 + i},1,1,pv,{end - 7_200}" for i in range(5)]  # 2 h behind the end
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join(jittered + late) + "\n")
    in_time = tmp_path / "in_time.csv"
    in_time.write_text("\n".join(jittered) + "\n")
    with pipeline(settings, bootstrap) as services:
        emitted = replay(shuffled, settings, bootstrap)
        wait_until_processed(settings, bootstrap, produced_targets(settings, emitted), 120, services)
    report = stored(settings)
    truth = expected(in_time, settings)
    assert report.realtime.hourly == truth["hourly"]
    assert report.realtime.funnel_daily == truth["funnel_daily"]
    assert report.behavior_totals["pv"] == truth["behavior_totals"]["pv"] + 5  # late events are still stored
    late_letters = [row for row in report.dead_letters if row["reason"] == "late"]
    assert late_letters == [{"reason": "late", "source": "stream", "rejected": 5}]


def _ts(line: str) -> int:
    try:
        return int(line.rsplit(",", 1)[1])
    except (ValueError, IndexError):
        return 0


def test_bad_messages_and_misrouted_events_on_the_topic(
    settings: Settings, bootstrap: str, tmp_path: Path
) -> None:
    """A foreign emitter writes garbage, invalid events, and users on partitions they do not hash to:
    the bad input is dead-lettered with its reason, the misrouted events are re-routed and counted once."""
    partition_of = Partitioner(settings.events_partitions)
    start = 1_511_600_000
    events = [
        Event(
            user_id=user,
            item_id=user * 10,
            category_id=3,
            behavior="pv" if user % 3 else "cart",
            ts=start + user,
        )
        for user in range(1, 200)
    ]
    misrouted = [event for event in events if partition_of(event.user_id) != 0]
    in_place = [event for event in events if partition_of(event.user_id) == 0]
    messages = [
        (0, encode_events(misrouted[:100])),
        (0, encode_events(misrouted[100:])),
        (0, encode_events(in_place)),
        (1, b"not json at all"),
        (2, b'{"user_id": 5, "item_id": 1, "category_id": 1, "behavior": "like", "ts": 1511600000}'),
    ]

    async def produce() -> dict[tuple[str, int], int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            sent = [
                await producer.send_and_wait(settings.events_topic, value, partition=p)
                for p, value in messages
            ]
        finally:
            await producer.stop()
        return {(settings.events_topic, meta.partition): meta.offset for meta in sent}

    with pipeline(settings, bootstrap) as services:
        wait_until_processed(settings, bootstrap, asyncio.run(produce()), 120, services)
    report = stored(settings)
    rows: set[tuple[int, int, int, str, int]] = {
        (e.user_id, e.item_id, e.category_id, e.behavior, e.ts) for e in events
    }
    assert report.realtime.hourly == hourly_activity(rows, settings.timezone)
    assert report.behavior_totals == behavior_totals(rows)
    reasons = {(row["reason"], row["source"]): row["rejected"] for row in report.dead_letters}
    assert reasons == {("malformed", "stream"): 1, ("unknown_behavior", "stream"): 1}


def test_services_started_on_a_fresh_state_dir_create_what_they_need(
    settings: Settings, bootstrap: str, tmp_path: Path
) -> None:
    """`omstream worker` and `omstream sink` as an operator starts them, on a state dir that does not
    exist yet (logs elsewhere): each creates what it needs, and together they store events."""
    fresh = settings.model_copy(update={"state_dir": tmp_path / "new" / "state"})
    with contextlib.ExitStack() as stack:
        services = []
        for command, group in (("worker", fresh.consumer_group), ("sink", fresh.sink_group)):
            log = stack.enter_context((tmp_path / f"{command}.log").open("wb"))
            process = subprocess.Popen(
                [sys.executable, "-m", "omstream", command],
                env=service_env(fresh, bootstrap),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(stop_process, process)
            services.append(process)
            # one at a time: the first alone finds no state dir at all
            asyncio.run(wait_for_members(bootstrap, group, 1, timeout=60, alive=[process]))
        events = [
            Event(user_id=1, item_id=2, category_id=3, behavior="pv", ts=1_511_600_000 + i) for i in range(5)
        ]
        emitted = asyncio.run(_emit(fresh, bootstrap, events))
        wait_until_processed(fresh, bootstrap, produced_targets(fresh, emitted), 120, services)
    assert stored(fresh).behavior_totals["pv"] == 5


async def _emit(settings: Settings, bootstrap: str, events: list[Event]) -> EmitReport:
    async with Emitter(
        bootstrap, settings.events_topic, settings.dlq_topic, settings.accept_range
    ) as emitter:
        for event in events:
            await emitter.emit(event)
        return await emitter.flush()


def test_the_windows_of_a_partition_that_falls_idle_become_final_on_time(
    settings: Settings, bootstrap: str
) -> None:
    """Events, then nothing: once the partition has been idle for the grace its watermark advances
    with the clock, so a window that ended is written final without any later event to close it."""
    now = int(time.time())
    live = settings.model_copy(
        update={
            "grace_seconds": 5,
            "accept_from": datetime.fromtimestamp(now - 3_600, UTC),
            "accept_to": datetime.fromtimestamp(now + 3_600, UTC),
        }
    )
    # the last second of a minute that has ended: only the clock can close its window now
    minute_ago = now - 120 - now % 60 + 59
    events = [Event(user_id=user, item_id=1, category_id=1, behavior="pv", ts=minute_ago) for user in (1, 2)]
    with pipeline(live, bootstrap) as services:
        emitted = asyncio.run(_emit(live, bootstrap, events))
        wait_until_processed(live, bootstrap, produced_targets(live, emitted), 60, services)
        minute = minute_ago - minute_ago % 60
        final = asyncio.run(_first_final_row(live, bootstrap, "minute", minute, timeout=60))
    assert (final.pv, final.uv, final.final) == (1, 1, 1)


async def _first_final_row(
    settings: Settings, bootstrap: str, kind: str, start: int, timeout: float
) -> WindowRow:
    """The first row of a window written final, as the workers publish it."""
    consumer = AIOKafkaConsumer(
        settings.windows_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            async for record in consumer:
                for row in decode_results(record.value or b"").windows:
                    if (row.kind, row.window_start, row.final) == (kind, start, 1):
                        return row
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


def test_a_fresh_broker_never_overwrites_a_window_row_with_a_partial_recount(
    settings: Settings, tmp_path: Path
) -> None:
    """The embedded broker keeps events in memory only: a restarted `omstream up` starts from offset 0
    with only what arrives after it. Its rows of a window counted before keep the earlier count."""
    hour = 1_511_600_400 - 1_511_600_400 % 3_600
    before = [Event(user_id=u, item_id=1, category_id=1, behavior="pv", ts=hour + u) for u in range(1, 4)]
    after = [
        Event(user_id=u, item_id=2, category_id=1, behavior="pv", ts=hour + 60 + u) for u in range(10, 30)
    ]
    for epoch, events in enumerate([before, after], start=1):
        with broker_for_test(tmp_path / f"broker-{epoch}") as bootstrap:
            asyncio.run(ensure_topics(bootstrap, topic_partitions(settings)))
            asyncio.run(start_epoch(bootstrap, settings.checkpoints_topic, epoch))
            with pipeline(settings, bootstrap) as services:
                emitted = asyncio.run(_emit(settings, bootstrap, [*events]))
                wait_until_processed(settings, bootstrap, produced_targets(settings, emitted), 60, services)
    [hourly] = stored(settings).realtime.hourly
    assert (hourly["pv"], hourly["uv"]) == (3, 3)
