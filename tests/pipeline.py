"""Helpers of the integration tests that run the pipeline (sink and workers as processes, real Tansu
and chDB): replaying a file, killing a worker mid-stream, and comparing what ClickHouse stored with
the batch computations of tests/expected.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

import clickhouse
from omstream.embedded.progress import replay_with_progress
from omstream.embedded.supervisor import all_alive
from omstream.settings import Settings
from report import Report, build_report
from stream.emitter import EmitReport
from stream.processed import ProcessedWatcher
from stream.replay import Pacer
from stream.sources.generator import generate_csv
from stream.sources.taobao import sort_by_time
from tests.expected import WindowKey, behavior_totals, distinct_valid_rows, funnel_daily, hourly_activity

# Small messages and takes: a kill lands with windows open and messages held
SMALL_TAKES = {
    "pack_size": 20,
    "take_fetches": 1,
    "take_messages": 25,
    "window_flush_seconds": 0.3,
    "window_snapshot_seconds": 0.5,
}


def ordered_sample(folder: Path) -> Path:
    """30,000 generated events with dirty rows, in time order, as the Taobao loader replays them."""
    generate_csv(folder / "events.csv", events=30_000, seed=3, dirty=True)
    sort_by_time(folder / "events.csv", folder / "ordered.csv")
    return folder / "ordered.csv"


def stored(settings: Settings) -> Report:
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        return build_report(client, settings.timezone, settings.funnel_conversion_seconds)
    finally:
        client.close()


def expected(path: Path, settings: Settings) -> dict[str, Any]:
    rows = distinct_valid_rows(path, settings.accept_range)
    return {
        "behavior_totals": behavior_totals(rows),
        "hourly": hourly_activity(rows, settings.timezone),
        "funnel_daily": funnel_daily(rows, settings.timezone),
    }


def assert_exact(settings: Settings, path: Path) -> Report:
    report, truth = stored(settings), expected(path, settings)
    assert report.behavior_totals == truth["behavior_totals"]
    assert report.realtime.hourly == truth["hourly"]
    assert report.realtime.funnel_daily == truth["funnel_daily"]
    return report


def replay(path: Path, settings: Settings, bootstrap: str, pacer: Pacer | None = None) -> EmitReport:
    return asyncio.run(replay_with_progress(path, settings, bootstrap, pacer=pacer))


def kill_when_processed(pid: int, settings: Settings, bootstrap: str, messages: int) -> None:
    """SIGKILL the worker once it has stored `messages` messages, whatever it is doing then."""

    async def wait() -> None:
        async with ProcessedWatcher(bootstrap, settings.processed_topic) as watcher:
            for _ in range(600):
                await watcher.poll(50)
                if (
                    sum(offset + 1 for (stage, _, _), offset in watcher.stages.items() if stage == "windows")
                    >= messages
                ):
                    return

    asyncio.run(wait())
    os.kill(pid, signal.SIGKILL)


async def wait_for_members(
    bootstrap: str, group: str, members: int, timeout: float, alive: Sequence[subprocess.Popen[bytes]] = ()
) -> None:
    """Until the consumer group is stable with `members` members (and the `alive` processes still run)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            all_alive(alive)
            (response,) = await admin.describe_consumer_groups([group])
            _, _, state, _, _, joined = response.groups[0]
            if state == "Stable" and len(joined) == members:
                return
            assert time.monotonic() < deadline, f"group {group}: {state} with {len(joined)} members"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def stored_windows(
    dsn: str,
) -> tuple[dict[WindowKey, tuple[int, ...]], dict[WindowKey, tuple[int, ...]], dict[str, int]]:
    """Every window row and funnel row as the realtime views read them, and the raw totals."""
    client = clickhouse.connect(dsn)
    try:
        windows = client.query(
            "SELECT kind, toUnixTimestamp(window_start), partition, pv, fav, cart, buy, uv, final "
            "FROM realtime_window_rows"
        ).result_rows
        funnels = client.query(
            "SELECT kind, toUnixTimestamp(window_start), partition, pv_users, cart_users, buy_users, final "
            "FROM realtime_funnel_rows"
        ).result_rows
        totals = client.query("SELECT behavior, count() FROM events GROUP BY behavior").result_rows
    finally:
        client.close()
    return (
        {(kind, start, partition): tuple(values) for kind, start, partition, *values in windows},
        {(kind, start, partition): tuple(values) for kind, start, partition, *values in funnels},
        {behavior: count for behavior, count in totals},
    )


def differences(
    got: dict[tuple[str, int, int], tuple[int, ...]], want: dict[tuple[str, int, int], tuple[int, ...]]
) -> list[tuple[tuple[str, int, int], tuple[int, ...] | None, tuple[int, ...] | None]]:
    """(window, stored, expected) of every window that differs, the first ten in time order."""
    keys = sorted(set(got) | set(want), key=lambda key: (key[1], key[0], key[2]))
    return [(key, got.get(key), want.get(key)) for key in keys if got.get(key) != want.get(key)][:10]
