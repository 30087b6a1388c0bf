"""PartitionWindows against an independent computation, including crashes rebuilt from checkpoints."""

import dataclasses
import random
from collections import defaultdict
from typing import TypeVar

import cramjam
import numpy as np
import pytest

from stream.windows import (
    Batch,
    Bucketer,
    Checkpoint,
    FunnelRow,
    PartitionWindows,
    WindowRow,
    WindowRules,
    funnel_users,
    row_version,
)
from stream.windows.snapshot import BadSnapshot

GRACE, CONVERSION = 600, 86_400
RULES = WindowRules(Bucketer("Asia/Shanghai"), GRACE, CONVERSION)
UTC_RULES = WindowRules(Bucketer("UTC"), GRACE, CONVERSION)
START = 1_511_539_200  # 2017-11-25 00:00 China time
SIZES = {"minute": 60, "hour": 3_600, "day": 86_400}
Event = tuple[int, int, int]  # user, ts, behaviour code
Row = TypeVar("Row", WindowRow, FunnelRow)


def make_messages(seed: int, count: int = 3_000, per_message: int = 5) -> list[list[Event]]:
    rng = random.Random(seed)
    events = sorted(
        (
            (rng.randrange(60), START + rng.randrange(2 * 86_400), rng.choice([0] * 8 + [1, 2, 3]))
            for _ in range(count)
        ),
        key=lambda event: event[1],
    )
    return [events[i : i + per_message] for i in range(0, len(events), per_message)]


def batch_of(messages: list[list[Event]], first_offset: int) -> Batch:
    flat = [(index, *event) for index, message in enumerate(messages) for event in message]
    index, users, ts, codes = (np.array(column, dtype=np.int64) for column in zip(*flat, strict=True))
    items = np.arange(first_offset * 100, first_offset * 100 + users.size, dtype=np.int64)  # all distinct
    return Batch(
        list(range(first_offset, first_offset + len(messages))), index, users, ts, codes, items, items
    )


def saved(windows: PartitionWindows) -> Checkpoint:
    """A checkpoint with the open windows, as the worker makes it (the encoding, in a thread there)."""
    checkpoint, encode = windows.snapshot()
    return dataclasses.replace(checkpoint, state=encode())


def keep_newest(table: dict[tuple[str, int], Row], rows: list[Row]) -> None:
    """As ReplacingMergeTree(version): the highest version of a window wins."""
    for row in rows:
        key = (row.kind, row.window_start)
        if key not in table or table[key].version <= row.version:
            table[key] = row


def run(
    messages: list[list[Event]],
    crash_after: list[int],
    take: int = 7,
    funnels: dict[tuple[str, int], FunnelRow] | None = None,
    rules: WindowRules = RULES,
    snapshot_every: int = 0,
) -> dict[tuple[str, int], WindowRow]:
    """Process in takes; after each take in `crash_after`, lose the state and rebuild from the checkpoint.
    Funnel rows go to `funnels` (the highest version wins there too). Every `snapshot_every` takes the
    checkpoint carries the open windows, and stands until the next one (as the worker does)."""
    stored: dict[tuple[str, int], WindowRow] = {}
    funnels = {} if funnels is None else funnels
    checkpoint: Checkpoint | None = None
    windows = PartitionWindows(0, rules, None)
    offset, takes = 0, 0
    while offset < len(messages):
        windows.add(batch_of(messages[offset : offset + take], offset))
        offset += take
        everything = takes % 3 == 0 or offset >= len(messages)  # the last take writes every funnel
        rows, funnel_rows = windows.collect(open_windows=True, open_funnels=everything)
        keep_newest(stored, rows)
        keep_newest(funnels, funnel_rows)
        if snapshot_every and takes % snapshot_every == snapshot_every - 1:
            checkpoint = saved(windows)
        elif checkpoint is None or not checkpoint.state:
            checkpoint = windows.checkpoint()
        takes += 1
        if takes in crash_after:
            windows = PartitionWindows(0, rules, checkpoint)
            offset = max(0, checkpoint.offset - takes % 4)
    return stored


def expected(messages: list[list[Event]]) -> dict[tuple[str, int], tuple[int, ...]]:
    events = [event for message in messages for event in message]
    close_point = max(ts for _, ts, _ in events) - GRACE
    groups: dict[tuple[str, int], list[Event]] = defaultdict(list)
    for event in events:
        local = event[1] + 8 * 3_600
        for kind, size in SIZES.items():
            start = local - local % size - 8 * 3_600 if kind == "day" else event[1] - event[1] % size
            groups[(kind, start)].append(event)
        minute = event[1] - event[1] % 60
        for start in range(minute - 3_540, minute + 1, 60):
            if start + 3_600 <= close_point:
                groups[("rolling_1h", start)].append(event)
    return {
        key: (*(sum(1 for e in members if e[2] == code) for code in range(4)), len({e[0] for e in members}))
        for key, members in groups.items()
    }


def values(stored: dict[tuple[str, int], WindowRow]) -> dict[tuple[str, int], tuple[int, ...]]:
    return {key: (row.pv, row.fav, row.cart, row.buy, row.uv) for key, row in stored.items()}


def test_time_ordered_input_gives_exact_windows() -> None:
    messages = make_messages(1)
    assert values(run(messages, crash_after=[])) == expected(messages)


@pytest.mark.parametrize("crash_after", [[1], [5, 6], [40], [45], [3, 50, 51, 90]])
def test_rebuilding_from_checkpoints_after_crashes_changes_nothing(crash_after: list[int]) -> None:
    """After take 45 the first day has closed: only the rolling window's covered minutes still reach
    back into it, and the checkpoint must too."""
    messages = make_messages(2)
    assert values(run(messages, crash_after)) == expected(messages)


@pytest.mark.parametrize("snapshot_every", [0, 5])
def test_funnel_rows_are_exact_with_open_funnels_written_every_third_take(snapshot_every: int) -> None:
    rng = random.Random(3)  # few users, out of order within the grace: never late, often not last
    events = [
        (rng.randrange(150), START + second - rng.randrange(GRACE), rng.choice([0, 0, 1, 2, 3]))
        for second in range(0, 30_000, 10)
    ]
    messages = [events[i : i + 5] for i in range(0, len(events), 5)]
    funnels: dict[tuple[str, int], FunnelRow] = {}
    rules = WindowRules(RULES.bucketer, GRACE, conversion=300)
    run(messages, crash_after=[4, 30, 31, 77], funnels=funnels, rules=rules, snapshot_every=snapshot_every)
    events = [event for message in messages for event in message]
    starts = {"hour": lambda ts: ts - ts % 3_600, "day": lambda ts: ts - (ts + 8 * 3_600) % 86_400}
    want = {}
    for kind, start_of in starts.items():
        for start in {start_of(ts) for _, ts, _ in events}:
            users, ts, codes = (
                np.array(column, dtype=np.int64)
                for column in zip(*(e for e in events if start_of(e[1]) == start), strict=True)
            )
            want[(kind, start)] = funnel_users(users, ts, codes, rules.conversion)
    assert {key: (row.pv_users, row.cart_users, row.buy_users) for key, row in funnels.items()} == want


def test_an_open_funnel_keeps_its_events_after_the_close_point_for_earlier_ones_to_join() -> None:
    windows = PartitionWindows(0, UTC_RULES, None)
    hour = START - START % 3_600
    windows.add(batch_of([[(9, hour + 1_000, 0)], [(1, hour + 420, 2)]], 0))  # close point: hour + 400
    windows.collect(open_windows=True, open_funnels=True)
    windows.add(batch_of([[(1, hour + 410, 0)]], 2))  # before the cart, after the close point
    _, funnels = windows.collect(open_windows=True, open_funnels=True)
    hourly = next(row for row in funnels if row.kind == "hour")
    assert (hourly.pv_users, hourly.cart_users) == (2, 1)


@pytest.mark.parametrize("crash_after", [[1], [5, 6], [40], [3, 50, 51, 90], [12, 13, 14, 15]])
def test_rebuilding_from_checkpoints_with_the_open_windows_changes_nothing(crash_after: list[int]) -> None:
    messages = make_messages(2)
    assert values(run(messages, crash_after, snapshot_every=4)) == expected(messages)


def test_a_checkpoint_with_the_open_windows_resumes_after_the_last_event() -> None:
    windows = PartitionWindows(0, RULES, None)
    windows.add(batch_of(make_messages(4, count=200)[:30], 0))
    windows.collect(open_windows=True, open_funnels=True)
    light, full = windows.checkpoint(), saved(windows)
    assert light.offset < full.offset == 30 and not light.state
    rebuilt = PartitionWindows(0, RULES, full)
    assert (rebuilt.watermark, rebuilt.last_offset, len(rebuilt.recent)) == (
        windows.watermark,
        windows.last_offset,
        len(windows.recent),
    )
    assert rebuilt.tallies.keys() == windows.tallies.keys()
    again = batch_of(make_messages(4, count=200)[25:31], 30)  # five messages seen before, then one new
    again.items[:] = again.categories[:] = np.arange(125, 125 + again.items.size)  # as first given
    for state in (rebuilt, windows):
        state.add(again)
    assert minute_counts(rebuilt) == minute_counts(windows)


def minute_counts(windows: PartitionWindows) -> list[int]:
    return [tally.counts.tolist() for (kind, _), tally in sorted(windows.tallies.items()) if kind == "minute"]


def test_a_snapshot_carries_the_clock_s_floors_recorded_after_it() -> None:
    windows = PartitionWindows(0, UTC_RULES, None)
    windows.add(batch_of([[(1, START, 0)]], 0))
    snapshot = saved(windows)
    windows.follow_clock(START + 5_000)  # idle: the clock moved the watermark on
    rebuilt = PartitionWindows(0, UTC_RULES, windows.with_floors(snapshot))
    behind_the_floor = batch_of([[(2, START + 100, 0)]], 1)
    assert windows.add(behind_the_floor).tolist() == rebuilt.add(behind_the_floor).tolist() == [True]


def test_a_forged_window_state_is_one_clear_error() -> None:
    headers = (b"\0\0\0\2{}", b"\0\0\0\2[]", b"\0\0\0\xff{", b'\0\0\0\x1a{"layout": [[0, 3, 99]]}')
    for state in (b"garbage", *(bytes(cramjam.zstd.compress(header)) for header in headers)):
        with pytest.raises(BadSnapshot, match="snapshot"):
            PartitionWindows(0, RULES, Checkpoint(0, 10, START, START, 9, (), state))


def test_late_events_are_flagged_and_excluded() -> None:
    windows = PartitionWindows(0, UTC_RULES, None)
    late = windows.add(
        batch_of([[(1, START + 5_000, 0)], [(2, START + 5_000 - GRACE - 1, 0), (3, START + 4_500, 0)]], 0)
    )
    assert late.tolist() == [False, True, False]


def test_funnel_users_follow_pv_cart_buy_order_within_the_conversion_window() -> None:
    users, ts, codes = (
        np.array(v, dtype=np.int64)
        for v in zip(
            (1, 10, 0),
            (1, 20, 2),
            (1, 30, 3),  # full funnel
            (2, 5, 2),
            (2, 10, 0),
            (2, 20, 3),  # cart before pv: stops at pv
            (3, 0, 0),
            (3, 90_000, 2),  # cart outside the conversion window
            (4, 50, 3),
            (4, 50, 2),
            (4, 50, 0),  # one second, arriving in reverse
            strict=True,
        )
    )
    assert funnel_users(users, ts, codes, CONVERSION) == (4, 2, 2)


def test_exact_duplicates_count_once_within_and_across_takes() -> None:
    windows = PartitionWindows(0, UTC_RULES, None)
    twin = (7, START + 10, 0)

    def take(events: list[Event], offset: int) -> None:
        flat = np.array(events, dtype=np.int64)
        same_item = np.full(len(events), 42, dtype=np.int64)
        index = np.zeros(len(events), dtype=np.int64)
        windows.add(Batch([offset], index, flat[:, 0], flat[:, 1], flat[:, 2], same_item, same_item))

    take([twin, twin, (8, START + 10, 0)], 0)
    take([twin, (7, START + 11, 0)], 1)
    rows, _ = windows.collect(open_windows=True, open_funnels=True)
    [minute] = [row for row in rows if row.kind == "minute"]
    assert (minute.pv, minute.uv) == (3, 2)


def single(user: int, ts: int, offset: int) -> Batch:
    return batch_of([[(user, ts, 0)]], offset)


def test_an_idle_partition_following_the_clock_closes_its_windows() -> None:
    windows = PartitionWindows(0, UTC_RULES, None)
    windows.add(single(1, START + 30, 0))
    rows, _ = windows.collect(open_windows=True, open_funnels=True)
    assert {row.kind: row.final for row in rows} == {"minute": 0, "hour": 0, "day": 0}
    windows.follow_clock(START + 3_600 + GRACE)  # the clock has passed the hour and its grace
    rows, _ = windows.collect(open_windows=True, open_funnels=True)
    assert {(row.kind, row.final) for row in rows} >= {("minute", 1), ("hour", 1), ("rolling_1h", 1)}
    assert windows.checkpoint().closed_before == START + 3_600


def test_a_rebuild_judges_the_messages_after_a_clock_floor_as_they_were_judged() -> None:
    """An event late only because its partition followed the clock is still late when the partition
    is rebuilt from a checkpoint after a crash: the floor travels in the checkpoint."""
    messages = [[(1, START + 30, 0)], [(2, START + 3_500, 0)], [(3, START + 3_550, 2)]]
    live = PartitionWindows(0, UTC_RULES, None)
    live.add(batch_of(messages[:2], 0))
    live.collect(open_windows=True, open_funnels=True)
    live.follow_clock(START + 2 * 3_600 + GRACE)  # idle: the day window stays open
    live.collect(open_windows=True, open_funnels=True)
    checkpoint = live.checkpoint()
    assert checkpoint.offset == 0 and checkpoint.floors == ((1, START + 2 * 3_600 + GRACE),)
    assert live.add(batch_of(messages[2:], 2)).tolist() == [True]
    rebuilt = PartitionWindows(0, UTC_RULES, checkpoint)
    assert rebuilt.add(batch_of(messages, 0)).tolist() == [False, False, True]
    rebuilt_rows, _ = rebuilt.collect(open_windows=True, open_funnels=True)
    assert {row.kind: (row.pv, row.cart, row.uv) for row in rebuilt_rows}["day"] == (2, 0, 2)


def test_row_versions_order_offsets_finality_and_broker_epochs() -> None:
    assert row_version(0, 10, final=False) < row_version(0, 11, final=False)
    assert row_version(0, 10, final=False) < row_version(0, 10, final=True)
    # a later broker (epoch) starts from offset 0 again: its rows never overwrite an earlier one's
    assert row_version(3_000_000, 1 << 30, final=True) < row_version(2_000_000, 0, final=False)
