"""Global minutes from the partitions' window rows: complete only once every partition is past them."""

from __future__ import annotations

from dataclasses import replace

from stream.alerts import MinuteAssembler, MinuteTotals
from stream.results import WindowResults, decode_results, encode_results
from stream.windows import WindowRow

T = 1_512_000_000 - 1_512_000_000 % 60


def row(partition: int, minute: int, pv: int, version: int, kind: str = "minute") -> WindowRow:
    return WindowRow(kind, T + 60 * minute, partition, pv, 1, 2, 3, pv // 2, 0, version)


def results(rows: list[WindowRow], through: dict[int, int]) -> WindowResults:
    """As the sink and the detector read them off the topic."""
    (message,) = encode_results(rows, [], {}, {p: T + seconds for p, seconds in through.items()})
    return decode_results(message)


def test_a_minute_is_complete_once_every_partition_is_written_through_its_end() -> None:
    minutes = MinuteAssembler(partitions=2)
    assert minutes.add(results([row(0, 0, 10, 1), row(0, 1, 4, 1)], {0: 130})) == []  # partition 1 unheard
    assert minutes.add(results([row(1, 0, 6, 1)], {1: 59})) == []  # partition 1 still inside minute 0
    (first,) = minutes.add(results([row(1, 0, 7, 2)], {1: 60}))
    assert first == MinuteTotals(T, pv=17, uv=8, cart=4, fav=2, buy=6, watermark=T + 60)


def test_the_latest_row_of_a_partition_counts_and_a_repeated_older_one_does_not() -> None:
    minutes = MinuteAssembler(partitions=1)
    minutes.add(results([row(0, 0, 5, 1), row(0, 0, 9, 3)], {0: 10}))
    minutes.add(results([row(0, 0, 5, 1)], {0: 10}))  # a worker re-sent an earlier row after a restart
    (minute,) = minutes.add(results([], {0: 60}))
    assert minute.pv == 9


def test_minutes_come_in_order_with_empty_ones_as_zeros_and_only_minute_rows_count() -> None:
    minutes = MinuteAssembler(partitions=1)
    done = minutes.add(results([row(0, 0, 5, 1), row(0, 0, 99, 1, kind="hour"), row(0, 3, 2, 1)], {0: 240}))
    assert [(m.start - T, m.pv, m.watermark - T) for m in done] == [
        (0, 5, 240),
        (60, 0, 240),
        (120, 0, 240),
        (180, 2, 240),
    ]
    assert minutes.add(results([row(0, 1, 50, 9)], {0: 250})) == []  # too late: minute 1 was judged


def test_a_partition_written_through_less_than_before_does_not_hold_minutes_back() -> None:
    minutes = MinuteAssembler(partitions=1)
    assert len(minutes.add(results([row(0, 0, 5, 1)], {0: 125}))) == 2
    assert minutes.add(results([row(0, 2, 5, 1)], {0: 100})) == []  # a rebuilt worker starts lower
    assert len(minutes.add(results([], {0: 180}))) == 1


def test_results_of_an_older_worker_without_written_through_times_are_read() -> None:
    legacy = b'{"windows": [], "funnels": [], "positions": {"0": 5}}'
    assert decode_results(legacy) == WindowResults([], [], {0: 5}, {})


def test_stored_rows_complete_the_minutes_every_partition_closed_and_the_topic_the_rest() -> None:
    final = [
        replace(r, final=1) for r in (row(0, 0, 5, 1), row(1, 0, 6, 1), row(0, 1, 7, 2), row(0, 3, 1, 3))
    ]
    open_row = row(1, 1, 3, 2)  # partition 1 is inside minute 1: its row there is not final
    minutes = MinuteAssembler(partitions=2)
    done = minutes.add_stored([*final[:3], open_row, final[3]])
    assert [(m.start - T, m.pv, m.watermark - T) for m in done] == [(0, 11, 60)]
    # the topic brings minute 0 again (skipped), partition 1's later row of minute 1, an older one
    done = minutes.add(results([row(0, 0, 5, 1), row(1, 1, 8, 4), row(1, 1, 2, 1)], {0: 240, 1: 120}))
    assert [(m.start - T, m.pv) for m in done] == [(60, 15)]
