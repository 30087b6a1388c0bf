"""Exact duplicates count once (as in the raw table): the natural keys of the events a partition
counted, back to its close point.

Keys are kept in chunks, one per take, each with the event-time range it spans. A key includes the
event's time, so a take's keys can only repeat keys of the chunks whose range overlaps the take's:
under a live stream, the last take or two, not every key of the grace period. A chunk goes once its
newest key is behind the close point: an event that old is late, never offered again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from stream.windows.buckets import Bools, Int64s

KEY_COLUMNS = ("user", "item", "category", "code", "ts")  # an event's natural key
_KEY_TS = KEY_COLUMNS.index("ts")
_MIX = np.array(  # odd 64-bit multipliers, one per key column: a cheap hash of a natural key
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5, 0xFF51AFD7ED558CCD],
    dtype=np.uint64,
)


@dataclass(frozen=True)
class _Chunk:
    keys: Int64s
    oldest: int  # event time
    newest: int


class RecentKeys:
    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []

    @classmethod
    def of(cls, chunks: Iterable[tuple[Int64s, int, int]]) -> RecentKeys:
        """Keys kept before, as `chunks` gave them."""
        recent = cls()
        recent._chunks = [_Chunk(keys, oldest, newest) for keys, oldest, newest in chunks]
        return recent

    def chunks(self) -> Iterator[tuple[Int64s, int, int]]:
        """(keys, oldest, newest event time) per chunk."""
        return ((chunk.keys, chunk.oldest, chunk.newest) for chunk in self._chunks)

    def __len__(self) -> int:
        return sum(len(chunk.keys) for chunk in self._chunks)

    def first_sightings(self, keys: Int64s) -> Bools:
        """Per row of `keys` (columns as KEY_COLUMNS), whether its key was not seen before, in a
        kept chunk or an earlier row; the keys seen first are kept."""
        if not len(keys):
            return np.ones(0, dtype=bool)
        times = keys[:, _KEY_TS]
        oldest, newest = int(times.min()), int(times.max())
        overlapping = [
            chunk.keys for chunk in self._chunks if chunk.newest >= oldest and chunk.oldest <= newest
        ]
        duplicate = _repeats(np.concatenate(overlapping) if overlapping else keys[:0], keys)
        first = keys[~duplicate]
        if len(first):
            times = first[:, _KEY_TS]
            self._chunks.append(_Chunk(first, int(times.min()), int(times.max())))
        return ~duplicate

    def forget_before(self, time: int) -> None:
        self._chunks = [chunk for chunk in self._chunks if chunk.newest >= time]


def _repeats(known: Int64s, keys: Int64s) -> Bools:
    """Per row of `keys`, whether it equals a row of `known` or an earlier row of `keys`.

    Vectorised: keys are hashed and sorted together, and only rows whose hash repeats are compared
    exactly, so a hash collision can never drop an event.
    """
    everything = np.concatenate([known, keys])
    hashes = (everything.astype(np.uint64) * _MIX).sum(axis=1, dtype=np.uint64)
    order = np.argsort(hashes, kind="stable")  # known rows first, then the keys in their order
    sorted_hashes = hashes[order]
    duplicate = np.zeros(len(keys), dtype=bool)
    for index in (np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1]) + 1).tolist():
        row, earlier = order[index], index - 1
        while earlier >= 0 and sorted_hashes[earlier] == sorted_hashes[index]:
            if np.array_equal(everything[order[earlier]], everything[row]):
                duplicate[row - len(known)] = row >= len(known)
                break
            earlier -= 1
    return duplicate
