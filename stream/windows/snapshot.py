"""A partition's open windows as bytes, so that a checkpoint can carry them.

A checkpoint without them says where to rebuild the open windows from: the first event of the open
day, so the broker must keep a day of events. One with them resumes after the last event processed,
and the broker may let go of everything before it.

What makes a snapshot large is the grace period: every event counted since the close point is kept,
as a duplicate key and, unless a fav, in its hour's and day's funnel. It is written once, as the
duplicate keys; each funnel keeps only its settled part (at most four events per user, see
`stream.windows.funnel.settle`) and takes its events after the close point back from the keys on
restore. Columns are stored as their offset from their minimum in the narrowest unsigned type that
holds them, then zstd-compressed. Nothing is pickled: the bytes come from a topic, and are read as
numbers only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import cramjam
import numpy as np
import orjson

from stream.events import FAV
from stream.windows.buckets import Int64s
from stream.windows.dedup import KEY_COLUMNS, RecentKeys
from stream.windows.funnel import settle
from stream.windows.kinds import FUNNEL_KINDS, TUMBLING

if TYPE_CHECKING:
    from stream.windows.state import CoveredMinute, PartitionWindows

_FORMAT = 2
_READS = (1, 2)  # format 1 kept the rolling window's minutes among the tallies: none covered yet
_LENGTH_BYTES = 4
_WIDTHS = tuple(np.dtype(kind) for kind in (np.uint8, np.uint16, np.uint32, np.uint64))
_WIDTH_TOPS = tuple((1 << (8 * kind.itemsize)) - 1 for kind in _WIDTHS)
_USER, _TS, _CODE = (KEY_COLUMNS.index(name) for name in ("user", "ts", "code"))
_UNREADABLE = (cramjam.DecompressionError, KeyError, IndexError, TypeError, ValueError)  # JSON: ValueError


class BadSnapshot(ValueError):
    """Bytes that are not a window snapshot of this format."""


class _Columns:
    """int64 columns, each stored as (minimum, width, length) and its narrowed bytes."""

    def __init__(self) -> None:
        self.layout: list[tuple[int, int, int]] = []
        self.parts: list[bytes] = []

    def put(self, values: Int64s) -> int:
        values = np.asarray(values, dtype=np.int64)
        low = int(values.min()) if values.size else 0
        span = (values - low).astype(np.uint64)
        top = int(span.max()) if span.size else 0
        width = next(index for index, most in enumerate(_WIDTH_TOPS) if top <= most)
        self.layout.append((low, width, values.size))
        self.parts.append(span.astype(_WIDTHS[width]).tobytes())
        return len(self.layout) - 1


@dataclass(frozen=True)
class _TallyCopy:
    kind: str
    start: int
    first_offset: int
    watermark_before: int
    counts: Int64s
    users: set[int]
    funnel: list[tuple[Int64s, Int64s, Int64s]]
    flags: tuple[bool, bool, bool]  # closed, dirty, funnel_dirty


@dataclass(frozen=True)
class _CoveredCopy:
    minute: CoveredMinute
    users: set[int]  # those last seen in it


def capture_state(windows: PartitionWindows) -> Callable[[], bytes]:
    """The open windows as they are now, copied where later takes change them (a set's copy costs a
    fraction of its encoding); the call returned encodes them, in another thread if need be, while
    takes go on."""
    tallies = [
        _TallyCopy(
            kind,
            start,
            tally.first_offset,
            tally.watermark_before,
            tally.counts.copy(),
            tally.users.copy(),
            list(tally.funnel),  # its arrays are replaced, never changed in place
            (tally.closed, tally.dirty, tally.funnel_dirty),
        )
        for (kind, start), tally in windows.tallies.items()
    ]
    header = {
        "format": _FORMAT,
        "watermark": windows.watermark,
        "last_offset": windows.last_offset,
        "closed_before": windows.closed_before,
        "close_point": windows.close_point,
        "next_rolling": windows.next_rolling,
    }
    sliding = windows.sliding
    covered = [_CoveredCopy(minute, set(sliding.last_seen_in[minute.start])) for minute in sliding.minutes]
    chunks = list(windows.recent.chunks())
    return partial(_encode, header, tallies, covered, chunks, windows.conversion)


def _encode(
    header: dict[str, Any],
    tallies: list[_TallyCopy],
    covered: list[_CoveredCopy],
    chunks: list[tuple[Int64s, int, int]],
    conversion: int,
) -> bytes:
    columns = _Columns()
    close_point = header["close_point"]
    encoded_tallies = []
    for tally in tallies:
        funnel: list[int] = []
        if tally.funnel:
            users, ts, codes = (np.concatenate(column) for column in zip(*tally.funnel, strict=True))
            users, ts, codes = settle(users, ts, codes, conversion, before=close_point)
            settled = ts < close_point  # the rest are among the duplicate keys
            funnel = [columns.put(column[settled]) for column in (users, ts, codes)]
        encoded_tallies.append(
            {
                "kind": tally.kind,
                "start": tally.start,
                "first_offset": tally.first_offset,
                "watermark_before": tally.watermark_before,
                "counts": columns.put(tally.counts),
                "users": columns.put(np.fromiter(tally.users, dtype=np.int64, count=len(tally.users))),
                "funnel": funnel,
                "flags": tally.flags,
            }
        )
    no_keys = np.zeros((0, len(KEY_COLUMNS)), dtype=np.int64)
    keys = np.concatenate([chunk for chunk, _, _ in chunks]) if chunks else no_keys
    header |= {
        "tallies": encoded_tallies,
        "covered": [
            {
                "start": copy.minute.start,
                "first_offset": copy.minute.first_offset,
                "watermark_before": copy.minute.watermark_before,
                "counts": columns.put(copy.minute.counts),
                "users": columns.put(np.fromiter(copy.users, dtype=np.int64, count=len(copy.users))),
            }
            for copy in covered
        ],
        "recent": [[oldest, newest, len(chunk)] for chunk, oldest, newest in chunks],
        "keys": [columns.put(keys[:, index]) for index in range(len(KEY_COLUMNS))],
        "layout": columns.layout,
    }
    encoded = orjson.dumps(header)
    body = len(encoded).to_bytes(_LENGTH_BYTES, "big") + encoded + b"".join(columns.parts)
    return bytes(cramjam.zstd.compress(body, level=1))


def restore_state(windows: PartitionWindows, data: bytes) -> None:
    """Put the snapshot's windows into freshly made `windows` (whose checkpoint carried it)."""
    try:
        header, columns = _read(data)
        if header["format"] not in _READS:
            raise BadSnapshot(f"window snapshot format {header['format']}, this worker reads {_READS}")
        _restore(windows, header, columns)
    except BadSnapshot:
        raise
    except _UNREADABLE as error:
        raise BadSnapshot(f"a checkpoint's window snapshot is unreadable: {error!r}") from error


def _read(data: bytes) -> tuple[dict[str, Any], list[Int64s]]:
    raw = bytes(cramjam.zstd.decompress(data))
    size = int.from_bytes(raw[:_LENGTH_BYTES], "big")
    header = orjson.loads(raw[_LENGTH_BYTES : _LENGTH_BYTES + size])
    position, columns = _LENGTH_BYTES + size, []
    for low, width, length in header["layout"]:
        kind = _WIDTHS[width]
        end = position + length * kind.itemsize
        if end > len(raw):
            raise BadSnapshot("a checkpoint's window snapshot is cut short")
        columns.append(np.frombuffer(raw, dtype=kind, count=length, offset=position).astype(np.int64) + low)
        position = end
    return header, columns


def _restore(windows: PartitionWindows, header: dict[str, Any], columns: list[Int64s]) -> None:
    from stream.windows.state import CoveredMinute, Tally  # state imports this module

    windows.watermark = int(header["watermark"])
    windows.last_offset = int(header["last_offset"])
    windows.closed_before = int(header["closed_before"])
    windows.next_rolling = header["next_rolling"]
    keys = np.column_stack([columns[index] for index in header["keys"]])
    bounds = np.cumsum([0] + [length for _, _, length in header["recent"]]).tolist()
    windows.recent = RecentKeys.of(
        (keys[bounds[index] : bounds[index + 1]], int(oldest), int(newest))
        for index, (oldest, newest, _) in enumerate(header["recent"])
    )
    unsettled = keys[(keys[:, _TS] >= int(header["close_point"])) & (keys[:, _CODE] != FAV)]
    for entry in header["tallies"]:
        kind, start = str(entry["kind"]), int(entry["start"])
        tally = Tally(int(entry["first_offset"]), int(entry["watermark_before"]), columns[entry["counts"]])
        tally.users = set(columns[entry["users"]].tolist())
        if kind in FUNNEL_KINDS and entry["funnel"]:
            inside = unsettled[(unsettled[:, _TS] >= start) & (unsettled[:, _TS] < start + TUMBLING[kind])]
            users, ts, codes = (columns[index] for index in entry["funnel"])
            tally.funnel = [(users, ts, codes), (inside[:, _USER], inside[:, _TS], inside[:, _CODE])]
        tally.closed, tally.dirty, tally.funnel_dirty = (bool(flag) for flag in entry["flags"])
        windows.tallies[(kind, start)] = tally
    for entry in header.get("covered", []):
        first_offset, watermark_before = int(entry["first_offset"]), int(entry["watermark_before"])
        minute = CoveredMinute(int(entry["start"]), columns[entry["counts"]], first_offset, watermark_before)
        windows.sliding.add(minute, columns[entry["users"]].tolist())
