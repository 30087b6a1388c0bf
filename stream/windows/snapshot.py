"""A partition's open windows as bytes, so that a checkpoint can carry them.

A checkpoint without them says where to rebuild the open windows from: the first event of the open
day, so the broker must keep a day of events. One with them resumes after the last event processed,
and the broker may let go of everything before it. Nothing here is pickled: the bytes come from a
topic, and are read as numbers only.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from stream.windows.buckets import Int64s
from stream.windows.dedup import KEY_COLUMNS, RecentKeys

if TYPE_CHECKING:
    from stream.windows.state import PartitionWindows

_FORMAT = 1
_LENGTH_BYTES = 4


class BadSnapshot(ValueError):
    """Bytes that are not a snapshot of this format."""


class _Arrays:
    def __init__(self) -> None:
        self.arrays: list[Int64s] = []

    def put(self, values: Any) -> int:
        self.arrays.append(np.ascontiguousarray(values, dtype="<i8"))
        return len(self.arrays) - 1


def encode_state(windows: PartitionWindows) -> bytes:
    arrays = _Arrays()
    tallies = [
        {
            "kind": kind,
            "start": start,
            "first_offset": tally.first_offset,
            "watermark_before": tally.watermark_before,
            "counts": arrays.put(tally.counts),
            "users": arrays.put(np.fromiter(tally.users, dtype=np.int64, count=len(tally.users))),
            "funnel": [arrays.put(np.concatenate(column)) for column in zip(*tally.funnel, strict=True)],
            "flags": [tally.closed, tally.dirty, tally.funnel_dirty],
        }
        for (kind, start), tally in windows.tallies.items()
    ]
    recent = [
        [oldest, newest, arrays.put(keys.reshape(-1))] for keys, oldest, newest in windows.recent.chunks()
    ]
    header = orjson.dumps(
        {
            "format": _FORMAT,
            "watermark": windows.watermark,
            "last_offset": windows.last_offset,
            "closed_before": windows.closed_before,
            "next_rolling": windows.next_rolling,
            "tallies": tallies,
            "recent": recent,
            "lengths": [array.size for array in arrays.arrays],
        }
    )
    body = b"".join(array.tobytes() for array in arrays.arrays)
    return zlib.compress(len(header).to_bytes(_LENGTH_BYTES, "big") + header + body, 1)


def restore_state(windows: PartitionWindows, data: bytes) -> None:
    """Put the snapshot's windows into freshly made `windows` (whose checkpoint carried it). The
    rolling window's sliding minutes need no saving: every minute a rolling window still needs is
    kept among the tallies, and the first rolling window to close gathers them again."""
    from stream.windows.state import Tally  # state imports this module

    try:
        raw = zlib.decompress(data)
        header = orjson.loads(raw[_LENGTH_BYTES : _LENGTH_BYTES + int.from_bytes(raw[:_LENGTH_BYTES], "big")])
        arrays = _split(raw[_LENGTH_BYTES + int.from_bytes(raw[:_LENGTH_BYTES], "big") :], header["lengths"])
        if header["format"] != _FORMAT:
            raise BadSnapshot(f"snapshot format {header['format']}, this worker reads {_FORMAT}")
        windows.watermark = int(header["watermark"])
        windows.last_offset = int(header["last_offset"])
        windows.closed_before = int(header["closed_before"])
        windows.next_rolling = header["next_rolling"]
        windows.floors = []  # every floor so far is in the watermark
        for entry in header["tallies"]:
            tally = Tally(int(entry["first_offset"]), int(entry["watermark_before"]), arrays[entry["counts"]])
            tally.users = set(arrays[entry["users"]].tolist())
            if entry["funnel"]:
                users, ts, codes = (arrays[index] for index in entry["funnel"])
                tally.funnel = [(users, ts, codes)]
            tally.closed, tally.dirty, tally.funnel_dirty = (bool(flag) for flag in entry["flags"])
            windows.tallies[(str(entry["kind"]), int(entry["start"]))] = tally
        windows.recent = RecentKeys.of(
            (arrays[keys].reshape(-1, len(KEY_COLUMNS)), int(oldest), int(newest))
            for oldest, newest, keys in header["recent"]
        )
    except BadSnapshot:
        raise
    except (zlib.error, orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as error:
        raise BadSnapshot(f"a checkpoint's window snapshot is unreadable: {error}") from error


def _split(body: bytes, lengths: list[int]) -> list[Int64s]:
    if sum(lengths) * 8 != len(body):
        raise BadSnapshot("a checkpoint's window snapshot is cut short")
    values = np.frombuffer(body, dtype="<i8").astype(np.int64)
    ends = np.cumsum(lengths).tolist()
    return [values[end - length : end] for end, length in zip(ends, lengths, strict=True)]
