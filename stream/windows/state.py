"""Per-partition window state, rebuilt exactly from a checkpoint after a crash or a rebalance.

Every result is a deterministic function of the partition's messages in offset order:
- the watermark advances per message (max event time so far); an event older than the watermark
  before its message minus the grace is late, so a window never receives an event after it closed;
- windows close when the watermark minus the grace passes their end, and their row is then final;
- the checkpoint is the first offset that still feeds an open window, with the watermark just
  before it. Re-reading from there rebuilds the open windows exactly; rows of windows that were
  already final (end ≤ `closed_before`) are not written again. Offsets before the checkpoint are
  never acknowledged to Kafka until the checkpoint has passed them, so nothing it needs is skipped.
- a partition that receives nothing follows the clock: once idle for the grace, its watermark
  advances with the wall clock, so its windows close at night too. Such a floor is a
  fact of the partition's history like a message: it is recorded with the offset it followed and
  travels in the checkpoint, so a rebuild judges the messages after it exactly as they were judged.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from stream.events import BEHAVIORS, FAV
from stream.windows.buckets import Bools, Bucketer, Int64s
from stream.windows.dedup import RecentKeys
from stream.windows.funnel import funnel_users, settle
from stream.windows.kinds import FUNNEL_KINDS, ROLLING, ROLLING_SIZE, ROLLING_SOURCE, ROLLING_STEP, TUMBLING
from stream.windows.snapshot import capture_state, restore_state

NO_TIME = -(1 << 62)
_BEHAVIOR_COUNT = len(BEHAVIORS)  # a tally's counts: one per behaviour code
# A row's version orders its writes: later offsets win within one broker's life, and a final row wins
# over the last open one at its offset. Rows of an earlier broker epoch (see `stream.checkpoints`)
# rank above a later one's: an embedded broker starts again from offset 0 with only what arrives
# after it, and that partial recount must not overwrite a row counted before. The rank sits in the
# top bits, where the realtime views of `clickhouse/migrations` read it (`VERSION_RANK_SHIFT`).
VERSION_RANK_SHIFT = 48
_MAX_EPOCH = (1 << (64 - VERSION_RANK_SHIFT)) - 1


def row_version(epoch: int, offset: int, final: bool) -> int:
    """`epoch`: how many fresh brokers the state has seen (0: one broker for ever, in production)."""
    return ((_MAX_EPOCH - epoch) << VERSION_RANK_SHIFT) | (offset << 1) | int(final)


Floor = tuple[int, int]  # (offset, watermark): the watermark was at least this after that offset


@dataclass(frozen=True)
class Checkpoint:
    partition: int
    offset: int  # first source offset that still feeds an open window
    watermark: int  # the watermark just before that offset
    closed_before: int  # every window ending at or before this is final in ClickHouse
    version: int  # the last offset processed when it was taken
    floors: tuple[Floor, ...] = ()  # the clock's floors recorded at or after `offset`
    # the open windows as they were after `version` (`stream.windows.snapshot`), or empty: then they
    # are rebuilt from `offset`, the first event of the oldest open window
    state: bytes = b""


@dataclass(frozen=True)
class WindowRow:
    kind: str
    window_start: int
    partition: int
    pv: int
    fav: int
    cart: int
    buy: int
    uv: int
    final: int
    version: int


@dataclass(frozen=True)
class FunnelRow:
    kind: str
    window_start: int
    partition: int
    pv_users: int
    cart_users: int
    buy_users: int
    final: int
    version: int


@dataclass
class Tally:
    first_offset: int
    watermark_before: int
    counts: Int64s = field(default_factory=lambda: np.zeros(_BEHAVIOR_COUNT, dtype=np.int64))
    users: set[int] = field(default_factory=set)
    funnel: list[tuple[Int64s, Int64s, Int64s]] = field(default_factory=list)
    closed: bool = False
    dirty: bool = True  # its window row changed since it was last written
    funnel_dirty: bool = True  # its funnel row, likewise


@dataclass(frozen=True)
class CoveredMinute:
    """A closed minute inside the rolling window: its counts, and where its events begin (a
    checkpoint without the open windows must reach back to it)."""

    start: int
    counts: Int64s
    first_offset: int
    watermark_before: int


class SlidingMinutes:
    """Users and behaviour counts over a sliding run of closed minutes. Each user is held once, at
    the latest minute they were seen in: moving the rolling window by a minute adds one minute and
    drops the users last seen before its new start. A minute's own users are not kept, so an hour
    of minutes costs the hour's distinct users, not sixty sets of them."""

    def __init__(self) -> None:
        self.latest: dict[int, int] = {}  # user -> the latest covered minute they were seen in
        self.last_seen_in: dict[int, set[int]] = {}  # minute -> the users whose latest it is
        self.counts: Int64s = np.zeros(_BEHAVIOR_COUNT, dtype=np.int64)
        self.minutes: deque[CoveredMinute] = deque()

    @property
    def newest(self) -> int:
        return self.minutes[-1].start if self.minutes else NO_TIME

    def cover(self, start: int, newer: list[tuple[int, Tally]]) -> None:
        """Drop the minutes before `start`, add the `newer` ones (sorted, after every covered minute)."""
        while self.minutes and self.minutes[0].start < start:
            dropped = self.minutes.popleft()
            self.counts -= dropped.counts
            for user in self.last_seen_in.pop(dropped.start, ()):
                del self.latest[user]
        for minute, tally in newer:
            covered = CoveredMinute(minute, tally.counts.copy(), tally.first_offset, tally.watermark_before)
            self.add(covered, tally.users)

    def add(self, minute: CoveredMinute, users: Iterable[int]) -> None:
        """Cover `minute`, later than every covered one, where `users` were seen."""
        self.minutes.append(minute)
        self.counts += minute.counts
        latest, last_seen_in = self.latest, self.last_seen_in
        seen = set(users)
        for user in seen:
            before = latest.get(user)
            if before is not None:
                last_seen_in[before].discard(user)
            latest[user] = minute.start
        last_seen_in[minute.start] = seen


@dataclass
class Batch:
    """One partition's messages of a take, flattened: per event its message index."""

    offsets: list[int]
    message_index: Int64s
    users: Int64s
    ts: Int64s
    codes: Int64s
    items: Int64s
    categories: Int64s


@dataclass(frozen=True)
class WindowRules:
    bucketer: Bucketer  # day boundaries in the configured time zone
    grace: int  # allowed lateness, seconds of event time
    conversion: int  # the funnel's conversion window
    epoch: int = 0  # the broker's epoch (see `row_version`)


class PartitionWindows:
    def __init__(self, partition: int, rules: WindowRules, checkpoint: Checkpoint | None) -> None:
        self.partition = partition
        self.bucketer = rules.bucketer
        self.grace = rules.grace
        self.conversion = rules.conversion
        self.epoch = rules.epoch
        self.resume_offset = checkpoint.offset if checkpoint else 0
        self.watermark = checkpoint.watermark if checkpoint else NO_TIME
        self.floors: list[Floor] = list(checkpoint.floors) if checkpoint else []
        # windows ending at or before this were final in ClickHouse when this state was rebuilt
        self.closed_before = checkpoint.closed_before if checkpoint else NO_TIME
        self.last_offset = self.resume_offset - 1
        self.tallies: dict[tuple[str, int], Tally] = {}
        self.next_rolling: int | None = None
        # natural keys of the events counted, back to the close point (`stream.windows.dedup`): an
        # exact duplicate is one event (as in the raw table); older duplicates would be late anyway
        self.recent = RecentKeys()
        self.sliding = SlidingMinutes()
        if checkpoint and checkpoint.state:
            restore_state(self, checkpoint.state)

    @property
    def close_point(self) -> int:
        return self.watermark - self.grace

    def add(self, batch: Batch) -> Bools:
        """Apply a batch; returns the mask of its events that are late (excluded from the windows)."""
        fresh = np.asarray(batch.offsets, dtype=np.int64)[batch.message_index] >= self.resume_offset
        watermark_before = self._advance_watermark(batch, fresh)
        late = fresh & (batch.ts < watermark_before - self.grace)
        used = fresh & ~late & self._first_sightings(batch, fresh & ~late)
        if used.any():
            offsets = np.asarray(batch.offsets, dtype=np.int64)[batch.message_index[used]]
            self._tally(batch.users[used], batch.ts[used], batch.codes[used], offsets, watermark_before[used])
        self.last_offset = max(self.last_offset, batch.offsets[-1])
        return late

    def _first_sightings(self, batch: Batch, candidates: Bools) -> Bools:
        """False for events whose natural key was counted before (in this take or a recent one)."""
        first = np.ones(batch.ts.size, dtype=bool)
        positions = np.flatnonzero(candidates)
        columns = (batch.users, batch.items, batch.categories, batch.codes, batch.ts)  # as KEY_COLUMNS
        keys = np.column_stack([column[positions] for column in columns])
        first[positions] = self.recent.first_sightings(keys)
        return first

    def follow_clock(self, floor: int) -> None:
        """The partition is idle: from here on its watermark is at least `floor`."""
        if floor > self.watermark:
            self.watermark = floor
            self.floors = [kept for kept in self.floors if kept[0] != self.last_offset]
            self.floors.append((self.last_offset, floor))

    def _advance_watermark(self, batch: Batch, fresh: Bools) -> Int64s:
        """Per event, the watermark before its message; advances self.watermark past the batch."""
        per_message = np.full(len(batch.offsets), NO_TIME, dtype=np.int64)
        np.maximum.at(per_message, batch.message_index[fresh], batch.ts[fresh])
        floors = self._floors_before(batch.offsets)
        after = np.maximum.accumulate(np.maximum(np.maximum(per_message, floors), self.watermark))
        before = np.maximum(np.concatenate(([self.watermark], after[:-1])), floors)
        self.watermark = int(after[-1])
        return before[batch.message_index]

    def _floors_before(self, offsets: list[int]) -> Int64s:
        """Per message, the highest floor recorded before it (NO_TIME if none)."""
        if not self.floors:
            return np.full(len(offsets), NO_TIME, dtype=np.int64)
        after = np.array([offset for offset, _ in self.floors], dtype=np.int64)
        highest = np.maximum.accumulate(np.array([floor for _, floor in self.floors], dtype=np.int64))
        index = np.searchsorted(after, np.asarray(offsets, dtype=np.int64), side="left") - 1
        return np.where(index >= 0, highest[np.maximum(index, 0)], NO_TIME)

    def _tally(self, users: Int64s, ts: Int64s, codes: Int64s, offsets: Int64s, watermarks: Int64s) -> None:
        for kind, size in TUMBLING.items():
            # one pass of numpy per kind, then per window only what must touch its tally
            starts, first, inverse = np.unique(
                self.bucketer.starts(size, ts), return_index=True, return_inverse=True
            )
            slots = inverse * _BEHAVIOR_COUNT + codes
            counts = np.bincount(slots, minlength=_BEHAVIOR_COUNT * starts.size).reshape(-1, _BEHAVIOR_COUNT)
            order = np.argsort(inverse, kind="stable")  # rows by window, in their original order
            ends = np.cumsum(np.bincount(inverse)).tolist()
            users_by_window = users[order].tolist()
            begin = 0
            for index, start in enumerate(starts.tolist()):
                end = ends[index]
                tally = self.tallies.get((kind, start))
                if tally is None:
                    row = first[index]
                    tally = self._open(kind, start, int(offsets[row]), int(watermarks[row]))
                tally.counts += counts[index]
                tally.users.update(users_by_window[begin:end])
                if kind in FUNNEL_KINDS:
                    rows = order[begin:end]
                    rows = rows[codes[rows] != FAV]  # the funnel never reads them
                    tally.funnel.append((users[rows], ts[rows], codes[rows]))
                    tally.funnel_dirty = True
                tally.dirty = True
                begin = end

    def _open(self, kind: str, start: int, offset: int, watermark: int) -> Tally:
        tally = self.tallies[(kind, start)] = Tally(offset, watermark)
        if kind == ROLLING_SOURCE:
            first_rolling = start - ROLLING_SIZE + ROLLING_STEP
            current = self.next_rolling
            self.next_rolling = first_rolling if current is None else min(current, first_rolling)
        return tally

    def collect(self, open_windows: bool, open_funnels: bool) -> tuple[list[WindowRow], list[FunnelRow]]:
        """Rows to write: every window that closed, and the open windows (`open_windows`) and open
        funnels (`open_funnels`) that changed. A funnel costs far more than a window's counts (it
        sorts the window's events), so the worker writes open funnels less often than open windows."""
        windows: list[WindowRow] = []
        funnels: list[FunnelRow] = []
        for (kind, start), tally in sorted(self.tallies.items()):
            if tally.closed:
                continue
            end = start + TUMBLING[kind]
            final = end <= self.close_point
            window = final or (open_windows and tally.dirty)
            funnel = kind in FUNNEL_KINDS and (final or (open_funnels and tally.funnel_dirty))
            if not (window or funnel):
                continue
            tally.closed = final
            tally.dirty &= not window
            tally.funnel_dirty &= not funnel
            if end <= self.closed_before:
                continue  # already final in ClickHouse before a restart; rebuilt only to feed others
            if window:
                windows.append(self._window_row(kind, start, tally.counts, len(tally.users), final))
            if funnel:
                funnels.append(self._funnel_row(kind, start, tally, final))
        windows += list(self._close_rolling())
        self._forget_closed()
        self.recent.forget_before(self.close_point)
        return windows, funnels

    def _window_row(self, kind: str, start: int, counts: Int64s, uv: int, final: bool) -> WindowRow:
        pv, fav, cart, buy = counts.tolist()
        version = row_version(self.epoch, self.last_offset, final)
        return WindowRow(kind, start, self.partition, pv, fav, cart, buy, uv, int(final), version)

    def _funnel_row(self, kind: str, start: int, tally: Tally, final: bool) -> FunnelRow:
        users, ts, codes = (np.concatenate(parts) for parts in zip(*tally.funnel, strict=True))
        if not final:  # compacted: later flushes concatenate and sort less
            users, ts, codes = settle(users, ts, codes, self.conversion, before=self.close_point)
            tally.funnel = [(users, ts, codes)]
        reached = funnel_users(users, ts, codes, self.conversion)
        version = row_version(self.epoch, self.last_offset, final)
        return FunnelRow(kind, start, self.partition, *reached, int(final), version)

    def _close_rolling(self) -> Iterator[WindowRow]:
        sliding = self.sliding
        # minutes not covered yet; the covered ones are all before the next window's end
        minutes = sorted(
            start for kind, start in self.tallies if kind == ROLLING_SOURCE and start > sliding.newest
        )
        while self.next_rolling is not None and self.next_rolling + ROLLING_SIZE <= self.close_point:
            start = self.next_rolling
            end = start + ROLLING_SIZE
            inside = minutes[bisect.bisect_left(minutes, start) : bisect.bisect_left(minutes, end)]
            had_data = bool(inside) or sliding.newest >= start
            if had_data and end > self.closed_before:
                newest = sliding.newest
                newer = [minute for minute in inside if minute > newest]
                sliding.cover(start, [(minute, self.tallies[(ROLLING_SOURCE, minute)]) for minute in newer])
                yield self._window_row(ROLLING, start, sliding.counts, len(sliding.latest), final=True)
            self.next_rolling = self._next_rolling_after(start, minutes, had_data)

    @staticmethod
    def _next_rolling_after(start: int, minutes: list[int], had_data: bool) -> int | None:
        if had_data:
            return start + ROLLING_STEP
        # an empty stretch: jump to the first window over the next minute with data (None: no data yet)
        later = minutes[bisect.bisect_left(minutes, start + ROLLING_SIZE) :]
        return later[0] - ROLLING_SIZE + ROLLING_STEP if later else None

    def _forget_closed(self) -> None:
        """Drop closed windows; a minute stays until the rolling window has covered it (or the last
        rolling window over it has closed: one already final before a restart is not covered)."""
        for key, tally in list(self.tallies.items()):
            kind, start = key
            if not tally.closed:
                continue
            if kind == ROLLING_SOURCE:
                gone = start <= self.sliding.newest or start + ROLLING_SIZE <= self.close_point
            else:
                gone = start + TUMBLING[kind] <= self.close_point
            if gone:
                del self.tallies[key]

    def snapshot(self) -> tuple[Checkpoint, Callable[[], bytes]]:
        """A checkpoint after the last event processed, and the call that encodes the open windows
        it must carry (`stream.windows.snapshot`): cheap to get, while the call does the work."""
        last, closed_before = self.last_offset, max(self.close_point, self.closed_before)
        return Checkpoint(self.partition, last + 1, self.watermark, closed_before, last), capture_state(self)

    def with_floors(self, snapshot: Checkpoint) -> Checkpoint:
        """`snapshot` with the clock's floors recorded since it was taken: a rebuild from it must
        judge the messages after it as they were judged (see `follow_clock`). Its version stays, so
        that a later snapshot, even one taken before these floors, still wins over it."""
        self.floors = [floor for floor in self.floors if floor[0] >= snapshot.version]  # older: in it
        floors = tuple(self.floors)
        return snapshot if floors == snapshot.floors else dataclasses.replace(snapshot, floors=floors)

    def checkpoint(self) -> Checkpoint:
        """Where this partition resumes without a snapshot: the first event of its oldest open window."""
        closed_before = max(self.close_point, self.closed_before)
        # the covered minutes too: the rolling windows still to close need their users again
        starts = [(tally.first_offset, tally.watermark_before) for tally in self.tallies.values()]
        starts += [(minute.first_offset, minute.watermark_before) for minute in self.sliding.minutes]
        offset, watermark = min(starts) if starts else (self.last_offset + 1, self.watermark)
        self.floors = [floor for floor in self.floors if floor[0] >= offset]  # the rest is in `watermark`
        return Checkpoint(
            self.partition, offset, watermark, closed_before, self.last_offset, tuple(self.floors)
        )
