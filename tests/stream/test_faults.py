"""Randomised faults: workers and the sink SIGKILLed at random moments of a replay, restarted at once
or after their Kafka session has expired, with one to three workers. Afterwards every window row of
every kind (minute, hour, day, rolling hour, hour and day funnels) of every partition equals the
plain-Python computation of the input, final flag included, and the raw events are stored once.

A few seeds run in the suite; `pytest -m soak tests/stream/test_faults.py` runs more
(OMSTREAM_SOAK_SEEDS, default 30), and prints how many kill points they survived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import clickhouse
from omstream.embedded.demo import produced_targets
from omstream.embedded.stack import service_process, topic_partitions, wait_until_processed
from omstream.settings import Settings
from stream.kafka import Partitioner, ensure_topics
from stream.replay import Pacer
from tests.conftest import broker_for_test
from tests.expected import WindowKey, behavior_totals, distinct_valid_rows, partition_windows
from tests.pipeline import SMALL_TAKES, replay

pytestmark = pytest.mark.integration

CI_SEEDS = (4, 7, 10, 11)  # 7, 10 and 11 lost events on the code before the fix (a stale take)
SOAK_SEEDS = int(os.environ.get("OMSTREAM_SOAK_SEEDS", "30"))
REPLAY_RATE = 2_000  # events/s: the 30,000-event sample takes 15 s, long enough for several kills


@dataclass(frozen=True)
class Fault:
    at: float  # seconds into the replay
    victim: str  # "sink" or "worker-N"
    restart_after: float  # 0: at once; otherwise past the dead member's session timeout


@dataclass
class Plan:
    workers: int
    faults: list[Fault]

    @classmethod
    def draw(cls, seed: int, settings: Settings, duration: float) -> Plan:
        rng = random.Random(seed)
        workers = rng.randint(1, 3)
        victims = [f"worker-{number}" for number in range(workers)]
        faults = []
        for _ in range(rng.randint(3, 6)):
            victim = "sink" if rng.random() < 0.2 else rng.choice(victims)
            delayed = rng.random() < 0.4
            restart_after = settings.session_timeout_s + rng.uniform(0.5, 3.0) if delayed else 0.0
            faults.append(Fault(round(rng.uniform(0.5, duration), 2), victim, round(restart_after, 2)))
        return cls(workers, sorted(faults, key=lambda fault: fault.at))


@dataclass
class Fleet:
    """The sink and the workers as child processes, each restartable under its name."""

    settings: Settings
    bootstrap: str
    stack: contextlib.ExitStack
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, name: str) -> None:
        command = "sink" if name == "sink" else "worker"
        process = self.stack.enter_context(service_process(self.settings, self.bootstrap, command, name))
        with self._lock:
            self.processes[name] = process

    def kill(self, name: str) -> None:
        with self._lock:
            process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.kills += 1

    def alive(self) -> list[subprocess.Popen[bytes]]:
        with self._lock:
            return list(self.processes.values())


@contextlib.contextmanager
def fleet(settings: Settings, bootstrap: str, workers: int) -> Iterator[Fleet]:
    with contextlib.ExitStack() as stack:
        services = Fleet(settings, bootstrap, stack)
        for name in ["sink", *(f"worker-{number}" for number in range(workers))]:
            services.start(name)
        yield services


def inflict(services: Fleet, faults: list[Fault]) -> None:
    """Kill and restart as planned (from the replay's start); returns once every victim is back."""
    began = time.monotonic()
    restarts: list[threading.Timer] = []
    for fault in faults:
        time.sleep(max(0.0, fault.at - (time.monotonic() - began)))
        if fault.victim not in services.processes:
            continue  # still down from an earlier fault
        services.kill(fault.victim)
        restart = threading.Timer(fault.restart_after, services.start, args=(fault.victim,))
        restart.start()
        restarts.append(restart)
    for restart in restarts:
        restart.join()


def stored_windows(
    settings: Settings,
) -> tuple[dict[WindowKey, tuple[int, ...]], dict[WindowKey, tuple[int, ...]], dict[str, int]]:
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        windows = client.query(
            "SELECT kind, toUnixTimestamp(window_start), partition, pv, fav, cart, buy, uv, final "
            "FROM realtime_window_rows"
        ).result_rows
        funnels = client.query(
            "SELECT kind, toUnixTimestamp(window_start), partition, pv_users, cart_users, buy_users, final "
            "FROM realtime_funnel_rows"
        ).result_rows
        totals = client.query("SELECT behavior, count() FROM distinct_events GROUP BY behavior").result_rows
    finally:
        client.close()
    return (
        {(kind, start, partition): tuple(values) for kind, start, partition, *values in windows},
        {(kind, start, partition): tuple(values) for kind, start, partition, *values in funnels},
        {behavior: count for behavior, count in totals},
    )


def run_with_faults(seed: int, path: Path, settings: Settings, bootstrap: str) -> int:
    """One randomised run; returns how many processes it killed."""
    plan = Plan.draw(seed, settings, duration=30_000 / REPLAY_RATE)
    with fleet(settings, bootstrap, plan.workers) as services:
        faults = threading.Thread(target=inflict, args=(services, plan.faults))
        faults.start()
        emitted = replay(path, settings, bootstrap, Pacer(rate=REPLAY_RATE))
        faults.join()
        wait_until_processed(settings, bootstrap, produced_targets(settings, emitted), 180, services.alive())
    rows = distinct_valid_rows(path, settings.accept_range)
    windows, funnels = partition_windows(
        rows,
        Partitioner(settings.events_partitions),
        settings.timezone,
        settings.grace_seconds,
        settings.funnel_conversion_seconds,
    )
    got_windows, got_funnels, totals = stored_windows(settings)
    where = f"seed {seed}: {plan}"
    assert totals == {b: n for b, n in behavior_totals(rows).items() if n}, where
    assert _differences(got_windows, windows) == [], where
    assert _differences(got_funnels, funnels) == [], where
    return services.kills


def _differences(
    got: dict[tuple[str, int, int], tuple[int, ...]], want: dict[tuple[str, int, int], tuple[int, ...]]
) -> list[tuple[tuple[str, int, int], tuple[int, ...] | None, tuple[int, ...] | None]]:
    """(window, stored, expected) of every window that differs, the first ten in time order."""
    keys = sorted(set(got) | set(want), key=lambda key: (key[1], key[0], key[2]))
    return [(key, got.get(key), want.get(key)) for key in keys if got.get(key) != want.get(key)][:10]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=SMALL_TAKES)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_every_window_is_exact_after_random_kills(
    seed: int, ordered_file: Path, settings: Settings, bootstrap: str
) -> None:
    run_with_faults(seed, ordered_file, settings, bootstrap)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SEEDS * 180)
def test_soak_random_kills(ordered_file: Path, settings: Settings, tmp_path: Path) -> None:
    kills = 0
    for seed in range(100, 100 + SOAK_SEEDS):
        fresh = settings.model_copy(update={"state_dir": tmp_path / f"seed-{seed}"})
        with broker_for_test(fresh.state_dir) as bootstrap:
            asyncio.run(ensure_topics(bootstrap, topic_partitions(fresh)))
            kills += run_with_faults(seed, ordered_file, fresh, bootstrap)
        print(f"seed {seed}: exact ({kills} kills so far)", flush=True)
    print(f"{SOAK_SEEDS} seeds, {kills} kill points survived")
