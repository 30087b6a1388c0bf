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

from stream.events import AcceptRange, Event, FixedRange, Rejected, RejectReason, check_window, classify_error

# The data set's window, 2017-11-25 to 2017-12-03 China time; events outside it are dirty rows.
TAOBAO_START = 1_511_539_200  # 2017-11-25 00:00 Asia/Shanghai
TAOBAO_DAYS = 9
TAOBAO_END = TAOBAO_START + TAOBAO_DAYS * 86_400  # 2017-12-04 00:00 Asia/Shanghai, exclusive

_FIELD_COUNT = 5
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
    code = "import sys; from stream.sources.taobao import _sort_here; _sort_here(sys.argv[1], sys.argv[2])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(source), str(target)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"sorting {source} failed: {done.stderr.strip().splitlines()[-1:]}")


def file_window(path: Path, timezone: str) -> FixedRange:
    """The whole days (in `timezone`) a file's events are on: the run of days around its busiest one
    that each have at least 1 % of that day's events. Read by chDB in a child process (see `sort_by_time`).
    """
    code = "import sys; from stream.sources.taobao import _days_here; _days_here(sys.argv[1], sys.argv[2])"
    done = subprocess.run([sys.executable, "-c", code, str(path), timezone], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"reading the times of {path} failed: {done.stderr.strip().splitlines()[-1:]}")
    days = {date.fromisoformat(day): count for day, count in json.loads(done.stdout)}
    if not days:
        raise ValueError(f"{path} has no event times")
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
        f"INTO OUTFILE '{_quoted(target)}' FORMAT LineAsString "
        # Spill to disk instead of holding the whole file in memory (both settings are needed).
        "SETTINGS max_bytes_before_external_sort = 100000000, max_bytes_ratio_before_external_sort = 0, "
        "storage_file_read_method = 'pread'"
    )


def _quoted(path: str) -> str:
    return str(Path(path).resolve()).replace("\\", "\\\\").replace("'", "\\'")
