"""Replay events onto Kafka through the emitter, optionally paced: rows, or a Taobao CSV file; live,
each event re-stamped to the moment it is sent."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from stream.emitter import EmitReport, Emitter
from stream.events import Event, FixedRange, Rejected, encode_events
from stream.sources.taobao import encoded_lines, file_header, parse_line, read_csv, sort_by_time

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

    def due_in(self, ts: int, events: int = 1) -> float:
        """Seconds to wait before `events` more, the last at event time `ts`, may be sent (0 when
        unpaced or behind schedule)."""
        self._count += events
        if self._first_ts is None:
            self._first_ts = ts
        if self.rate:
            target = self._count / self.rate
        elif self.speedup:
            target = (ts - self._first_ts) / self.speedup
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
            wait = pacer.due_in(row.ts)
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
    time_ordered: bool = False,
) -> EmitReport:
    """Replay a Taobao CSV, read as a stream (`time_ordered`: sorted by event time on disk first);
    `on_progress` gets the bytes read so far. `live` is the file's own window: its events are read in
    it, and re-stamped to the present as they are sent."""
    if live is None:
        lines = encoded_lines(path, emitter.accept_range, emitter.partitions, time_ordered)
        return await replay_encoded(lines, emitter, pacer or Pacer(), on_progress, file_header(path))
    if not time_ordered:
        return await replay(read_csv(path, live, on_progress), emitter, pacer, live=True)
    with tempfile.TemporaryDirectory(prefix="omstream-replay-") as folder:
        ordered = Path(folder) / "time-ordered.csv"
        sort_by_time(path, ordered)
        return await replay(read_csv(ordered, live, on_progress), emitter, pacer, live=True)


async def replay_encoded(
    chunks: Iterable[list[bytes]],
    emitter: Emitter,
    pacer: Pacer,
    on_progress: Callable[[int], None] | None = None,
    header: str | None = None,
) -> EmitReport:
    """Send the lines `encoded_lines` gives: events chDB encoded go out as they are, batched per
    partition in their order; every other line is judged by `parse_line`, and a valid event among them
    joins its partition's batch in its place. The file's `header` row, if any, is skipped once."""
    batches: dict[int, list[bytes]] = defaultdict(list)
    read = 0
    for lines in chunks:
        for start in range(0, len(lines), _PACE_EVERY):
            group = lines[start : start + _PACE_EVERY]
            for line in group:
                tag, ts, size, payload = line.split(b"\t", 3)
                read += int(size) + 1
                if tag == b"-1":
                    if header is not None and payload.rstrip(b"\r") == header.encode():
                        header = None
                        continue
                    judged = await _judged(payload, emitter)
                    if judged is None:
                        continue
                    partition, payload = judged
                else:
                    partition = int(tag)
                batch = batches[partition]
                batch.append(payload)
                if len(batch) >= emitter.pack:
                    await emitter.send_encoded(partition, batch)
                    batches[partition] = []
            if (wait := pacer.due_in(int(ts), len(group))) > 0:
                await _send_all(batches, emitter)  # what is due now leaves now, not when a batch fills
                await asyncio.sleep(wait)
        if on_progress is not None:
            on_progress(read)
    await _send_all(batches, emitter)
    return await emitter.flush()


async def _judged(line: bytes, emitter: Emitter) -> tuple[int, bytes] | None:
    """A line chDB did not encode: its partition and encoded event, or None when it is dead-lettered."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    if not text:
        return None
    row = parse_line(text, emitter.accept_range)
    if isinstance(row, Rejected):
        await emitter.reject(row)
        return None
    return emitter.partition_of(row), encode_events([row])


async def _send_all(batches: dict[int, list[bytes]], emitter: Emitter) -> None:
    for partition, batch in batches.items():
        if batch:
            await emitter.send_encoded(partition, batch)
    batches.clear()
