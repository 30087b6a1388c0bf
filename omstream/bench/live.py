"""`omstream bench freshness` and `omstream bench soak`: `omstream up` under a steady live load.

Both start `omstream up` on a fresh state directory and send it generated events at a steady rate,
stamped with the time they are sent (or, with a speedup, with a clock running that many times faster,
so that days close within minutes and retention has something to release).

- freshness: probes (events of users of their own) go out with the load; the time from a probe's send
  until the query endpoint shows it in the raw table, and until its minute window counts every event
  sent into that minute up to it; p50/p99/max per rate.
- soak: resident memory of every process of the run and the disk of the broker's store and of
  ClickHouse, sampled over the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from omstream.embedded.retention import ObjectStore
from omstream.embedded.running import QUERY_ENDPOINT_FILE
from omstream.embedded.stack import topic_partitions
from omstream.embedded.store import STORE_DIR
from omstream.settings import Settings
from stream.emitter import Emitter
from stream.events import FixedRange
from stream.kafka import Partitioner

_TICK_S = 0.05
_PROBE_USERS = 1 << 50  # probe users are this and above; the load's users are below
_BEHAVIORS = ("pv",) * 88 + ("fav", "cart", "cart", "buy") * 3


@dataclass(frozen=True)
class Up:
    """A running `omstream up`: its process, state directory, broker and query endpoint."""

    process: subprocess.Popen[str]
    state: Path
    bootstrap: str
    query: dict[str, str]

    def sql(self, statement: str) -> list[list[str]]:
        """Rows of a read over the query endpoint (TSV)."""
        auth = base64.b64encode(f"{self.query['user']}:{self.query['password']}".encode()).decode()
        request = urllib.request.Request(
            f"{self.query['url']}/?database={self.query['database']}",
            data=statement.encode(),
            headers={"Authorization": f"Basic {auth}"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            text = reply.read().decode()
        return [line.split("\t") for line in text.splitlines() if line]

    def topics_mb(self) -> dict[str, float]:
        """What the store holds of each topic, in MB."""
        store = ObjectStore(json.loads((self.state / "up.json").read_text())["store"])
        held = {
            topic: sum(batch.size for p in range(partitions) for batch in store.batches(topic, p))
            for topic, partitions in topic_partitions(Settings()).items()
        }
        return {topic: round(size / 1e6, 1) for topic, size in held.items() if size}

    def services(self) -> dict[str, int]:
        """PIDs of `up` and of each of its services."""
        status = json.loads((self.state / "up.json").read_text())
        return {"up": self.process.pid} | {name: s["pid"] for name, s in status["services"].items()}


@contextlib.contextmanager
def running_up(state: Path, env: dict[str, str]) -> Iterator[Up]:
    """`omstream up` on `state` until its banner; stopped with SIGTERM after the block (not SIGINT: a
    bench started in the background of a shell would hand down SIGINT ignored, and `up` kept running)."""
    environment = {
        **os.environ,
        "OMSTREAM_STATE_DIR": str(state),
        "KAFKA_BOOTSTRAP": "",
        "CLICKHOUSE_DSN": "",
    }
    log = (state.parent / "up.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "omstream", "up"],
        env=environment | env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        banner = process.stdout.readline() if process.stdout else ""
        if "omstream up:" not in banner:
            raise RuntimeError(f"omstream up did not start; see {state.parent / 'up.log'}")
        broker = json.loads((state / "broker.json").read_text())["bootstrap"]
        query = json.loads((state / QUERY_ENDPOINT_FILE).read_text())
        yield Up(process, state, broker, query)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@dataclass
class Clock:
    """Event time: now, or a clock `speedup` times faster from `start`."""

    speedup: float = 1.0
    start: float = field(default_factory=time.time)
    _origin: float = field(default_factory=time.monotonic)

    def now(self) -> int:
        return int(self.start + (time.monotonic() - self._origin) * self.speedup)


@dataclass
class Probe:
    user_id: int
    ts: int
    sent_at: float
    minute_count: int  # events sent into its minute, itself included
    raw_s: float | None = None
    window_s: float | None = None


class Load:
    """Events at a steady rate, packed per partition as the emitter packs them; probes among them."""

    def __init__(
        self, emitter: Emitter, clock: Clock, partitions: int, pack: int, per_minute: dict[int, int]
    ) -> None:
        self._emitter = emitter
        self._clock = clock
        self._partitioner = Partitioner(partitions)
        self._pack = pack
        self._random = random.Random(7)
        self._item = 0
        self.sent = 0
        self.per_minute = per_minute  # events sent into each minute, by every load of the run

    def _event(self, user_id: int, ts: int) -> tuple[int, bytes]:
        self._item += 1
        behavior = self._random.choice(_BEHAVIORS)
        body = {
            "user_id": user_id,
            "item_id": self._item,
            "category_id": self._item % 997,
            "behavior": behavior,
        }
        self.per_minute[ts - ts % 60] = self.per_minute.get(ts - ts % 60, 0) + 1
        return self._partitioner(user_id), orjson.dumps(body | {"ts": ts})

    async def send(self, count: int, probe: int | None = None) -> Probe | None:
        """`count` events of now (and a probe of user `probe`), sent; waits for none of them."""
        ts = self._clock.now()
        by_partition: dict[int, list[bytes]] = {}
        for _ in range(count):
            partition, event = self._event(self._random.randrange(1, 1_000_000), ts)
            by_partition.setdefault(partition, []).append(event)
        made = None
        if probe is not None:
            partition, event = self._event(probe, ts)
            by_partition.setdefault(partition, []).append(event)
            made = Probe(probe, ts, time.monotonic(), self.per_minute[ts - ts % 60])
        for partition, events in by_partition.items():
            for start in range(0, len(events), self._pack):
                await self._emitter.send_encoded(partition, events[start : start + self._pack])
        self.sent += count + (probe is not None)
        return made


async def _steady(
    load: Load,
    rate: float,
    seconds: float,
    probes: list[Probe],
    probes_per_s: float = 0,
    on_tick: Callable[[], None] = lambda: None,
) -> None:
    """Send `rate` events/s for `seconds`, and `probes_per_s` probes (added to `probes` as sent)."""
    started = time.monotonic()
    next_probe = started
    while (elapsed := time.monotonic() - started) < seconds:
        due = rate * elapsed - (load.sent - len(probes))
        probe = None
        if probes_per_s and time.monotonic() >= next_probe:
            probe = _PROBE_USERS + len(probes) + int(started)
            next_probe += 1 / probes_per_s
        made = await load.send(max(0, int(due)), probe)
        if made is not None:
            probes.append(made)
        on_tick()
        await asyncio.sleep(_TICK_S)


async def _watch(up: Up, probes: list[Probe], load: Load, stop: asyncio.Event) -> None:
    """Polls the query endpoint for the probes not yet visible, raw and in their minute window. A probe
    counts as visible at the start of the first read that saw it (a read sees what was stored before it
    started), so the figures include up to 0.1 s of polling but not the reads' own time."""
    while not stop.is_set() or any(p.raw_s is None or p.window_s is None for p in probes):
        waiting_raw = [p for p in probes if p.raw_s is None]
        waiting_window = [p for p in probes if p.window_s is None]
        if waiting_raw:
            ids = ",".join(str(p.user_id) for p in waiting_raw)
            asked = time.monotonic()
            rows = await asyncio.to_thread(up.sql, f"SELECT user_id FROM events WHERE user_id IN ({ids})")
            seen = {int(row[0]) for row in rows}
            for probe in waiting_raw:
                if probe.user_id in seen:
                    probe.raw_s = asked - probe.sent_at
        if waiting_window:
            minutes = ",".join(str(p.ts - p.ts % 60) for p in waiting_window)
            asked = time.monotonic()
            rows = await asyncio.to_thread(
                up.sql,
                "SELECT toUnixTimestamp(window_start), sum(pv + fav + cart + buy) "
                "FROM realtime_windows FINAL WHERE kind = 'minute' "
                f"AND toUnixTimestamp(window_start) IN ({minutes}) GROUP BY window_start",
            )
            counted = {int(row[0]): int(row[1]) for row in rows}
            for probe in waiting_window:
                if counted.get(probe.ts - probe.ts % 60, 0) >= probe.minute_count:
                    probe.window_s = asked - probe.sent_at
        if stop.is_set() and all(time.monotonic() - p.sent_at > 60 for p in probes if p.window_s is None):
            return  # what is not visible a minute after the load stopped is reported as missing
        await asyncio.sleep(0.1)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max_s": round(ordered[-1], 3),
    }


async def _freshness_at(
    up: Up, rate: float, seconds: float, pack: int, per_minute: dict[int, int]
) -> dict[str, Any]:
    settings = Settings()
    topics = (settings.events_topic, settings.dlq_topic)
    async with Emitter(up.bootstrap, *topics, FixedRange(0, 2**40), pack=pack) as emitter:
        load = Load(emitter, Clock(), emitter.partitions, pack, per_minute)
        stop = asyncio.Event()
        probes: list[Probe] = []
        watcher = asyncio.create_task(_watch(up, probes, load, stop))
        started = time.monotonic()
        await _steady(load, rate, seconds, probes, probes_per_s=4)
        report = await emitter.flush()
        achieved = load.sent / (time.monotonic() - started)
        stop.set()
        await watcher
    return {
        "rate": rate,
        "sent_per_s": round(achieved),
        "failed": report.failed,
        "probes": len(probes),
        "raw": _percentiles([p.raw_s for p in probes if p.raw_s is not None]),
        "minute_window": _percentiles([p.window_s for p in probes if p.window_s is not None]),
        "not_visible": sum(p.window_s is None or p.raw_s is None for p in probes),
    }


def run_freshness_bench(rates: list[float], seconds: float, pack: int) -> dict[str, Any]:
    """Freshness at each rate, in one `omstream up`, after a warm-up."""
    with (
        tempfile.TemporaryDirectory(prefix="omstream-fresh-") as folder,
        running_up(Path(folder) / "s", {}) as up,
    ):
        # a minute's window counts every load's events: a probe waits for all those sent before it
        per_minute: dict[int, int] = {}
        asyncio.run(_freshness_at(up, min(rates), 20, pack, per_minute))  # services joined, fetching
        curve = []
        for rate in rates:
            curve.append(asyncio.run(_freshness_at(up, rate, seconds, pack, per_minute)))
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
        return {"seconds_per_rate": seconds, "curve": curve}


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (the store and the broker have none; chDB's
    sink is one process), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _disk_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_blocks * 512
    return round(total / 1e6, 1)


def run_soak_bench(rate: float, minutes: float, speedup: float, sample_s: float) -> dict[str, Any]:
    """`up` under `rate` events/s for `minutes`, sampling every process's RSS and the disk."""
    clock = Clock(speedup)
    env = {"OMSTREAM_BROKER_RELEASE_S": "0" if speedup > 1 else "60"}
    if speedup > 1:  # event time runs fast: accept the days it will cover
        span = minutes * 60 * speedup
        env |= {
            "OMSTREAM_ACCEPT_FROM": datetime.fromtimestamp(clock.start - 86_400, UTC).isoformat(),
            "OMSTREAM_ACCEPT_TO": datetime.fromtimestamp(clock.start + span + 86_400, UTC).isoformat(),
        }
    samples: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="omstream-soak-") as folder,
        running_up(Path(folder) / "s", env) as up,
    ):
        started = time.monotonic()
        next_sample = started

        def sample() -> None:
            nonlocal next_sample
            if time.monotonic() < next_sample:
                return
            next_sample += sample_s
            samples.append(
                {
                    "t_s": round(time.monotonic() - started),
                    "event_time": datetime.fromtimestamp(clock.now(), UTC).isoformat(timespec="minutes"),
                    "rss_mb": {name: _rss_mb(pid) for name, pid in up.services().items()},
                    "store_mb": _disk_mb(up.state / STORE_DIR),
                    "topics_mb": up.topics_mb(),
                    "clickhouse_mb": _disk_mb(up.state / "clickhouse"),
                }
            )
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)

        async def soak() -> int:
            settings = Settings()
            topics = (settings.events_topic, settings.dlq_topic)
            async with Emitter(up.bootstrap, *topics, FixedRange(0, 2**40)) as emitter:
                load = Load(emitter, clock, emitter.partitions, 250, {})
                await _steady(load, rate, minutes * 60, [], on_tick=sample)
                report = await emitter.flush()
                return report.failed

        failed = asyncio.run(soak())
    return {"rate": rate, "minutes": minutes, "speedup": speedup, "failed": failed, "samples": samples}
