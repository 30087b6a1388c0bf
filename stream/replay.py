"""Replay events onto Kafka through the emitter, optionally paced: rows, or a Taobao CSV file; live,
each event re-stamped to the moment it is sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from stream.emitter import EmitReport, Emitter
from stream.events import Event, FixedRange, Rejected
from stream.sources.taobao import read_csv

_PACE_EVERY = 1_000  # events between pacing checks: sleeping per event would cap the rate itself


class Pacer:
    """Holds emission to `rate` events/s, or to event time sped up `speedup` times (one of them)."""

    def __init__(self, rate: float | None = None, speedup: float | None = None) -> None:
        if rate is not None and speedup is not None:
            raise ValueError("give either a rate or a speedup, not both")
        self.rate = rate
        self.speedup = speedup
        self._started = time.monotonic()
        self._first_ts: int | None = None
        self._count = 0

    def due_in(self, event: Event) -> float:
        """Seconds to wait before this event may be sent (0 when unpaced or behind schedule)."""
        self._count += 1
        if self._first_ts is None:
            self._first_ts = event.ts
        if self.rate:
            target = self._count / self.rate
        elif self.speedup:
            target = (event.ts - self._first_ts) / self.speedup
        else:
            return 0.0
        return max(0.0, target - (time.monotonic() - self._started))


async def replay(
    rows: Iterable[Event | Rejected], emitter: Emitter, pacer: Pacer | None = None, live: bool = False
) -> EmitReport:
    """Emit every event (`live`: stamped with the time it is sent), dead-letter every rejection, and wait
    for all acknowledgements."""
    pacer = pacer or Pacer()
    for number, row in enumerate(rows, 1):
        if isinstance(row, Event):
            wait = pacer.due_in(row)
            if wait > 0 and (number % _PACE_EVERY == 0 or wait > 0.05):
                await emitter.send_buffered()  # what is due now leaves now, not when a message fills
                await asyncio.sleep(wait)
            await emitter.emit(row.model_copy(update={"ts": int(time.time())}) if live else row)
        else:
            await emitter.reject(row)
    return await emitter.flush()


async def replay_file(
    path: Path,
    emitter: Emitter,
    pacer: Pacer | None = None,
    on_progress: Callable[[int], None] | None = None,
    live: FixedRange | None = None,
) -> EmitReport:
    """Replay a Taobao CSV (read as a stream); `on_progress` gets the bytes read so far. `live` is the
    file's own window: its events are read in it, and re-stamped to the present as they are sent."""
    rows = read_csv(path, live or emitter.accept_range, on_progress)
    return await replay(rows, emitter, pacer, live=live is not None)
