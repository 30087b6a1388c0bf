"""Global minutes: the sum over every source partition of one event-time minute, once it is complete.

A worker writes each partition's minute rows to `omstream.windows` (one partition: every worker's
rows arrive in the order each worker sent them) together with how far that partition is written
through: every minute of it ending at or before that time has its current row on the topic (the
watermark after a full flush, the close point after a take that wrote only closed windows). A global
minute is complete once every partition is written through its end; its totals are then the sum of
the partitions' latest rows (a partition without a row had no event in it). Everything here is a
function of the topic's messages in order, so re-reading the topic rebuilds it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from stream.results import WindowResults
from stream.windows import WindowRow

MINUTE = 60
METRICS = ("pv", "uv", "cart", "fav", "buy", "pay_rate")  # every metric an alert can watch


@dataclass(frozen=True)
class MinuteTotals:
    """One global minute: counts summed over partitions, and the event time it was complete at."""

    start: int  # unix seconds, a multiple of 60
    pv: int
    uv: int
    cart: int
    fav: int
    buy: int
    watermark: int  # the lowest partition's written-through time when the minute became complete

    def value(self, metric: str) -> float:
        if metric == "pay_rate":  # buys per active user (the minute rows hold no distinct buyers)
            return self.buy / self.uv if self.uv else 0.0
        return float(getattr(self, metric))


class MinuteAssembler:
    """Collects partitions' minute rows until their global minute is complete, then yields its totals.

    `partitions`: the events topic's partition count. Minutes are yielded in order and without gaps,
    from the first minute any partition wrote a row for; a minute nobody had events in is all zeros.
    """

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.written_through: dict[int, int] = {}
        self.rows: dict[int, dict[int, WindowRow]] = {}  # minute start -> partition -> latest row
        self.next_minute: int | None = None  # the first minute not yet yielded

    def add(self, results: WindowResults) -> list[MinuteTotals]:
        for row in results.windows:
            if row.kind == "minute" and (self.next_minute is None or row.window_start >= self.next_minute):
                by_partition = self.rows.setdefault(row.window_start, {})
                known = by_partition.get(row.partition)
                if known is None or known.version <= row.version:
                    by_partition[row.partition] = row
        for partition, through in results.written_through.items():
            self.written_through[partition] = max(through, self.written_through.get(partition, through))
        return self._complete()

    def add_stored(self, rows: Sequence[WindowRow]) -> list[MinuteTotals]:
        """Rows the sink stored (each partition's latest per minute, in minute order), before any of
        the topic: a partition is written through the end of its latest final minute row, since a
        worker closes its minutes in order. The minutes complete there are yielded each complete at
        its own end, as if the stream had just brought it; the rows of later minutes stay to be
        completed by the topic's rows (a row of the topic replaces a stored one of no higher version,
        and the topic's rows of minutes yielded here are skipped: no minute counts twice)."""
        through: dict[int, int] = {}
        for row in rows:
            if row.final:
                through[row.partition] = max(through.get(row.partition, 0), row.window_start + MINUTE)
        done: list[MinuteTotals] = []
        for start, minute_rows in groupby(rows, key=lambda row: row.window_start):
            reached = {partition: min(start, end) for partition, end in through.items()}
            done += self.add(WindowResults(list(minute_rows), [], {}, reached))
        return done + self.add(WindowResults([], [], {}, through))

    def _complete(self) -> list[MinuteTotals]:
        if len(self.written_through) < self.partitions:
            return []
        if self.next_minute is None:  # every partition has spoken: the series starts at its first row
            if not self.rows:
                return []
            self.next_minute = min(self.rows)
        through = min(self.written_through.values())
        done: list[MinuteTotals] = []
        while self.next_minute + MINUTE <= through:
            rows = self.rows.pop(self.next_minute, {}).values()
            done.append(
                MinuteTotals(
                    self.next_minute,
                    pv=sum(row.pv for row in rows),
                    uv=sum(row.uv for row in rows),
                    cart=sum(row.cart for row in rows),
                    fav=sum(row.fav for row in rows),
                    buy=sum(row.buy for row in rows),
                    watermark=through,
                )
            )
            self.next_minute += MINUTE
        return done
