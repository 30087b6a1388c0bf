import gzip
from pathlib import Path

import pytest

from stream.events import Event, FixedRange, Rejected, encode_events
from stream.kafka import Partitioner
from stream.sources.generator import generate_csv
from stream.sources.taobao import (
    UnreadableFile,
    _without_times,
    encoded_lines,
    file_header,
    file_times,
    file_window,
    parse_line,
    read_csv,
    sort_by_time,
)

WINDOW = FixedRange(1_511_539_200, 1_512_316_800)


def test_parse_line_accepts_a_taobao_row() -> None:
    event = parse_line("1,2268318,2520377,pv,1511544070", WINDOW)
    assert event == Event(user_id=1, item_id=2268318, category_id=2520377, behavior="pv", ts=1511544070)


def test_parse_line_rejects_each_kind_of_bad_row_with_a_reason() -> None:
    cases = {
        "garbage,,x": "malformed",
        "1,2,3,pv": "malformed",
        "1,2,x,pv,1511544070": "invalid",
        "1,2,3,like,1511544070": "unknown_behavior",
        "1,2,3,pv,1505117799": "out_of_window",
    }
    for line, reason in cases.items():
        result = parse_line(line, WINDOW)
        assert isinstance(result, Rejected), line
        assert (result.reason.value, result.payload) == (reason, line)


def test_read_csv_streams_plain_and_gzip_alike(tmp_path: Path) -> None:
    import gzip

    text = "1,2,3,pv,1511544070\nbad\n2,2,3,buy,1511544071\n"
    plain, packed = tmp_path / "a.csv", tmp_path / "a.csv.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    seen: list[int] = []
    results = list(read_csv(plain, WINDOW, on_progress=seen.append))
    assert results == list(read_csv(packed, WINDOW))
    assert [isinstance(result, Event) for result in results] == [True, False, True]
    assert seen[-1] == plain.stat().st_size


def test_sort_by_time_orders_by_timestamp_and_keeps_every_line(tmp_path: Path, taobao_sample: Path) -> None:
    target = tmp_path / "sorted.csv"
    sort_by_time(taobao_sample, target)
    lines = target.read_text().splitlines()
    assert sorted(lines) == sorted(taobao_sample.read_text().splitlines())
    stamps = [int(line.rsplit(",", 1)[1]) for line in lines]
    assert stamps == sorted(stamps)


def test_sort_by_time_keeps_unparseable_lines(tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("1,2,3,pv,20\ngarbage\n1,2,3,pv,10\n")
    sort_by_time(source, target)
    assert target.read_text().splitlines() == ["garbage", "1,2,3,pv,10", "1,2,3,pv,20"]


def test_a_files_window_is_its_busy_days_in_the_time_zone(tmp_path: Path, taobao_sample: Path) -> None:
    assert file_window(taobao_sample, "Asia/Shanghai") == WINDOW  # its one row of 2017-09-11 left out
    day = 86_400
    lines = [f"1,2,3,pv,{WINDOW.start + offset}" for offset in range(0, 3 * day, 300)]  # 3 days
    lines += ["1,2,3,pv,-2145916800", "1,2,3,pv,2000000000", "garbage", f"1,2,3,pv,{WINDOW.start - 10}"]
    source = tmp_path / "a.csv.gz"
    source.write_bytes(gzip.compress("\n".join(lines).encode()))
    assert file_window(source, "Asia/Shanghai") == FixedRange(WINDOW.start, WINDOW.start + 3 * day)
    hours = 3_600  # China time is UTC+8: its midnight is 16:00 UTC the day before
    in_utc = FixedRange(WINDOW.start - 16 * hours, WINDOW.start + 3 * day + 8 * hours)
    assert file_window(source, "UTC") == in_utc


def test_lines_chdb_encodes_are_the_events_parse_line_reads(tmp_path: Path) -> None:
    """The fast replay path: every line chDB encodes is the event `parse_line` reads from it, written as
    `encode_events` writes it and routed as the partitioner routes it; every other line is left to
    `parse_line`."""
    source = tmp_path / "events.csv"
    generate_csv(source, events=20_000, seed=4, dirty=True)
    odd = [
        "007,08,9,pv,1511600000",
        " 1,2,3,pv,1511600000",
        "1,2,3,pv,1511600000\r",
        "",
        "1,2,3,buy,1511600000.0",
        "12345678901234567890,1,1,pv,1511600000",
        "1,2,3,cart,151160000",
        "-1,2,3,pv,1511600000",
        "4,5,6,pv,1512316800",  # the first second after the window
    ]
    source.write_text(source.read_text() + "\n".join(odd) + "\n")
    window = WINDOW
    partition_of = Partitioner(4)
    encoded = [line.split(b"\t", 3) for chunk in encoded_lines(source, window, 4, False) for line in chunk]
    fast: list[Event] = []
    judged: list[Event | Rejected] = []
    for tag, _, _, payload in encoded:
        if tag == b"-1":
            text = payload.decode().rstrip("\r\n")
            judged += [parse_line(text, window)] if text else []
            continue
        event = Event.model_validate_json(payload)
        assert payload == encode_events([event]) and int(tag) == partition_of(event.user_id)
        fast.append(event)
    lines = [line for line in source.read_text().splitlines() if line]
    everything = [parse_line(line, window) for line in lines]
    assert sorted(map(repr, fast + judged)) == sorted(map(repr, everything))
    assert (
        len(fast) > 0.9 * len(lines)
        and Event(user_id=7, item_id=8, category_id=9, behavior="pv", ts=1511600000) in fast
    )


def test_a_file_is_encoded_in_its_own_order(tmp_path: Path) -> None:
    # 1M events, ~33 MB: chDB reads a file this large in parallel blocks, which it interleaved
    # (about one read in two), so a time-ordered replay reached the windows out of order
    raw, ordered = tmp_path / "raw.csv", tmp_path / "ordered.csv"
    generate_csv(raw, events=1_000_000, seed=1)
    sort_by_time(raw, ordered)
    expected = [line.rsplit(b",", 1)[1] for line in ordered.read_bytes().splitlines()]
    for _ in range(4):
        encoded = [
            line.split(b"\t", 2)[1] for chunk in encoded_lines(ordered, WINDOW, 4, False) for line in chunk
        ]
        assert encoded == expected


COLUMNS = "user_id,item_id,category_id,behavior,timestamp"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (b"\x00\x01\x02\xff\xfe binary\n" * 10, "is not a text CSV file (binary content)"),
        (b"1\t2\t3\tpv\t1511544070\n", f"is tab-separated: expected 5 comma-separated fields ({COLUMNS})"),
        (b"1,2,3,1511544070\n" * 3, f"has lines of 4 comma-separated fields: expected 5 ({COLUMNS})"),
        (b"1,2,3,pv,1511544070,x\n", f"has lines of 6 comma-separated fields: expected 5 ({COLUMNS})"),
        (
            b"1,2,3,pv,yesterday\n",
            f"has no event times: no line's 5th field is a Unix time in seconds ({COLUMNS})",
        ),
    ],
    ids=["empty", "blank", "binary", "tabs", "4 fields", "6 fields", "no times"],
)
def test_a_file_without_event_times_says_what_it_holds_instead(
    tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    assert _without_times(path) == f"{path} {says}"


def test_reading_the_times_of_a_file_of_another_shape_is_one_error_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2,3,1511544070\n")
    with pytest.raises(UnreadableFile, match="has lines of 4 comma-separated fields: expected 5"):
        file_times(path, "Asia/Shanghai")


def test_a_file_s_span_runs_from_its_first_to_just_after_its_last_event_on_its_days(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    # two events on 2017-11-25 (China time), one on 11-26, and a broken clock's row of 2014 outside them
    rows = [1_511_600_000, 1_511_610_000, 1_511_700_000, 1_400_000_000]
    path.write_text(COLUMNS + "\n" + "".join(f"1,2,3,pv,{ts}\n" for ts in rows))
    times = file_times(path, "Asia/Shanghai")
    assert times.span == FixedRange(1_511_600_000, 1_511_700_001)
    assert times.window == FixedRange(WINDOW.start, WINDOW.start + 2 * 86_400)


def test_a_header_row_is_a_header_and_read_as_none(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(f"{COLUMNS}\n1,2,3,pv,1511544070\n")
    assert file_header(path) == COLUMNS
    assert list(read_csv(path, WINDOW)) == [parse_line("1,2,3,pv,1511544070", WINDOW)]
    path.write_text("1,2,3,pv,1511544070\nuser_id,item_id,category_id,behavior,timestamp\n")
    assert file_header(path) is None
    assert [row.reason.value for row in read_csv(path, WINDOW) if isinstance(row, Rejected)] == ["invalid"]
