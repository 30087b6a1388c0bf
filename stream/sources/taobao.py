"""Reading the Taobao UserBehavior CSV (`user_id,item_id,category_id,behavior,timestamp`, no header).

The real file is 3.5 GB and sorted by user, so it is read as a stream, and time-ordering is done by
chDB on disk (`sort_by_time`), never by loading rows into Python.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from stream.events import (
    BEHAVIORS,
    EVENT_COLUMNS,
    AcceptRange,
    Event,
    FixedRange,
    Rejected,
    RejectReason,
    check_window,
    classify_error,
)


class UnreadableFile(ValueError):
    """A file that cannot be read as Taobao events: missing, unreadable, or without event times."""


# The data set's window, 2017-11-25 to 2017-12-03 China time; events outside it are dirty rows.
TAOBAO_START = 1_511_539_200  # 2017-11-25 00:00 Asia/Shanghai
TAOBAO_DAYS = 9
TAOBAO_END = TAOBAO_START + TAOBAO_DAYS * 86_400  # 2017-12-04 00:00 Asia/Shanghai, exclusive

_FIELD_COUNT = 5
# Spill to disk instead of holding the whole file in memory (both sort settings are needed).
_SORT_ON_DISK = (
    "max_bytes_before_external_sort = 100000000, max_bytes_ratio_before_external_sort = 0, "
    "storage_file_read_method = 'pread'"
)
_ENCODED_CHUNK = 1 << 20  # bytes of encoded lines read from the child at a time
_PROGRESS_EVERY = 20_000  # lines between progress callbacks: cheap, yet smooth for a progress bar
# A day belongs to a file's window when it has at least this share of the busiest day's events: the
# scattered rows of broken clocks (the real file has some in 1902-2037) stay outside it.
_WINDOW_DAY_SHARE = 0.01


def parse_line(line: str, accept_range: AcceptRange) -> Event | Rejected:
    parts = line.split(",")
    if len(parts) != _FIELD_COUNT:
        return Rejected(RejectReason.MALFORMED, f"expected 5 comma-separated fields, got {len(parts)}", line)
    user_id, item_id, category_id, behavior, ts = parts
    try:
        event = Event(
            user_id=int(user_id),
            item_id=int(item_id),
            category_id=int(category_id),
            behavior=behavior,  # type: ignore[arg-type]  # pydantic checks the value
            ts=int(ts),
        )
    except ValidationError as error:
        reason, detail = classify_error(error)
        return Rejected(reason, detail, line)
    except ValueError as error:
        return Rejected(RejectReason.INVALID, f"not an integer: {error}", line)
    result = check_window(event, accept_range)
    return result if isinstance(result, Event) else Rejected(result.reason, result.detail, line)


def _open(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """Returns (reader, raw): read lines from the first, measure progress in bytes on the second."""
    raw = path.open("rb")
    reader: BinaryIO = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw  # type: ignore[assignment]
    return reader, raw


def read_csv(
    path: Path, accept_range: AcceptRange, on_progress: Callable[[int], None] | None = None
) -> Iterator[Event | Rejected]:
    """Stream a Taobao CSV as events and rejections; `on_progress` gets bytes of the file read so far."""
    reader, raw = _open(path)
    with raw, reader:
        for number, line in enumerate(reader, 1):
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            if text:
                yield parse_line(text, accept_range)
            if on_progress is not None and number % _PROGRESS_EVERY == 0:
                on_progress(raw.tell())
        if on_progress is not None:
            on_progress(raw.tell())


def sort_by_time(source: Path, target: Path) -> None:
    """Write `source`'s lines ordered by their timestamp to `target` (plain CSV), using chDB on disk.

    Unparseable lines sort first and are kept verbatim, so the reader still rejects them with a reason.
    chDB runs in a child process: a process can hold only one chDB path, and ours may hold the sink's.
    """
    done = subprocess.run(_in_child("_sort_here", str(source), str(target)), capture_output=True, text=True)
    if done.returncode != 0:
        raise UnreadableFile(f"sorting {source} failed: {done.stderr.strip().splitlines()[-1:]}")


def file_window(path: Path, timezone: str) -> FixedRange:
    """The whole days (in `timezone`) a file's events are on: the run of days around its busiest one
    that each have at least 1 % of that day's events. Read by chDB in a child process (see `sort_by_time`).
    """
    done = subprocess.run(_in_child("_days_here", str(path), timezone), capture_output=True, text=True)
    if done.returncode != 0:
        raise UnreadableFile(f"reading the times of {path} failed: {done.stderr.strip().splitlines()[-1:]}")
    days = {date.fromisoformat(day): count for day, count in json.loads(done.stdout)}
    if not days:
        raise UnreadableFile(f"{path} has no event times")
    first, last = _busy_days(days)
    zone = ZoneInfo(timezone)
    start = datetime.combine(first, time(), zone)
    end = datetime.combine(last + timedelta(days=1), time(), zone)
    return FixedRange(int(start.timestamp()), int(end.timestamp()))


def _busy_days(days: dict[date, int]) -> tuple[date, date]:
    """The first and last day of the run around the busiest day whose days are busy enough."""
    busiest = max(days, key=days.__getitem__)
    enough = max(1, days[busiest] * _WINDOW_DAY_SHARE)
    first = last = busiest
    while days.get(first - timedelta(days=1), 0) >= enough:
        first -= timedelta(days=1)
    while days.get(last + timedelta(days=1), 0) >= enough:
        last += timedelta(days=1)
    return first, last


def _in_child(function: str, *arguments: str) -> list[str]:
    """The command that runs `function` of this module with `arguments` in a child Python."""
    code = f"import sys; from stream.sources.taobao import {function}; {function}(*sys.argv[1:])"
    return [sys.executable, "-c", code, *arguments]


def _days_here(source: str, timezone: str) -> None:
    import chdb

    ts = "toInt64OrNull(splitByChar(',', line)[5])"
    result = chdb.query(
        f"SELECT toString(toDate32(toDateTime64({ts}, 0, '{timezone}'))) AS day, count() AS events "
        f"FROM file('{_quoted(source)}', 'LineAsString', 'line String') "
        f"WHERE length(splitByChar(',', line)) = {_FIELD_COUNT} AND {ts} IS NOT NULL GROUP BY day",
        "JSONCompact",
    )
    print(json.dumps(json.loads(result.bytes())["data"]))


def _sort_here(source: str, target: str) -> None:
    import chdb

    Path(target).unlink(missing_ok=True)
    chdb.query(
        f"SELECT line FROM file('{_quoted(source)}', 'LineAsString', 'line String') "
        "ORDER BY toInt64OrZero(splitByChar(',', line)[5]) "
        f"INTO OUTFILE '{_quoted(target)}' FORMAT LineAsString SETTINGS {_SORT_ON_DISK}"
    )


def encoded_lines(
    path: Path, accept_range: AcceptRange, partitions: int, time_ordered: bool
) -> Iterator[list[bytes]]:
    """The file's lines as chDB judges and encodes them, a chunk at a time: `partition\tts\tsize\t{event
    as JSON}` for a line that is certainly one valid event in the range (digits, a known behaviour, the
    time in range), routed as Kafka's default partitioner routes its user; `-1\tts\tsize\tline` for any
    other line, which `parse_line` judges (it gives the reason, or takes a line the strict pattern
    does not, one with spaces, say). `size` is the line's length in the file. A child process runs
    chDB (see `sort_by_time`), so even a 3.5 GB file is read, sorted on disk and encoded without
    passing through Python's parsing."""
    start, end = accept_range.bounds()
    arguments = [str(path), str(partitions), str(start), str(end), "1" if time_ordered else "0"]
    with subprocess.Popen(
        _in_child("_encode_here", *arguments), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        rest = b""
        while chunk := child.stdout.read(_ENCODED_CHUNK):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield lines
        error = child.stderr.read().decode(errors="replace").strip()
    if child.returncode != 0:
        raise UnreadableFile(f"reading {path} failed: {error.splitlines()[-1:]}")


def _encode_here(source: str, partitions: str, start: str, end: str, time_ordered: str) -> None:
    import chdb

    behaviors = "|".join(BEHAVIORS)
    # the event as the model writes it (`encode_events`): its fields in order, no defaults
    fields = ", ".join(
        f"{value} AS {name}"
        for name, value in zip(
            EVENT_COLUMNS[:_FIELD_COUNT],
            ["user_id", "toUInt64OrZero(f[2])", "toUInt64OrZero(f[3])", "f[4]", "ts"],
            strict=True,
        )
    )
    query = (
        f"SELECT if(valid, kafkaMurmurHash(toString(user_id)) % {int(partitions)}, -1), ts, length(line), "
        f"if(valid, formatRowNoNewline('JSONEachRow', {fields}), line) "
        "FROM (SELECT line, splitByChar(',', line) AS f, toInt64OrZero(f[5]) AS ts, "
        f"match(line, '^[0-9]{{1,18}},[0-9]{{1,18}},[0-9]{{1,18}},({behaviors}),[0-9]{{1,10}}$') "
        f"AND ts >= {int(start)} AND ts < {int(end)} AS valid, toUInt64OrZero(f[1]) AS user_id "
        f"FROM file('{_quoted(source)}', 'LineAsString', 'line String')) "
        + (
            "ORDER BY ts SETTINGS "
            if time_ordered == "1"
            # in the file's own order: parallel reading interleaves the file's blocks, so a file
            # already in time order would reach the windows out of order (events counted late)
            else "SETTINGS max_threads = 1, input_format_parallel_parsing = 0, "
        )
        + f"output_format_json_quote_64bit_integers = 0, {_SORT_ON_DISK}"
    )
    out = sys.stdout.buffer
    for chunk in chdb.connect(":memory:").send_query(query, "TSVRaw"):
        out.write(chunk.bytes())
    out.flush()


def _quoted(path: str) -> str:
    return str(Path(path).resolve()).replace("\\", "\\\\").replace("'", "\\'")
