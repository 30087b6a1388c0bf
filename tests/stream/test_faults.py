"""Randomised faults: workers and the sink SIGKILLed at random moments of a replay, restarted at once
or after their Kafka session has expired, with one to three workers. Afterwards every window row of
every kind (minute, hour, day, rolling hour, hour and day funnels) of every partition equals the
plain-Python computation of the input, final flag included, and the raw events are stored once.

Two families of runs:
- small takes (`SMALL_TAKES`) on a broker whose topics the test created, at random moments;
- live-like runs, as an operator meets them: the services started by hand on a bare broker (the
  topics are whatever the services and the broker make of them), a paced stream the workers keep up
  with, default settings or small takes, 1 or 2 workers; a worker, the sink or both killed at a
  random time, as a take's window rows reach Kafka or as a checkpoint does, and restarted 1 s later
  or after their session expired.

A few seeds run in the suite; `pytest -m soak tests/stream/test_faults.py` runs more
(OMSTREAM_SOAK_SEEDS seeds of each family, default 30), and prints how many kill points they survived.
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
from typing import Literal

import pytest
from aiokafka import AIOKafkaConsumer

from omstream.embedded.demo import produced_targets
from omstream.embedded.stack import service_process, topic_partitions, wait_until_processed
from omstream.settings import Settings
from stream.kafka import Partitioner, ensure_topics
from stream.replay import Pacer
from tests.conftest import broker_for_test
from tests.expected import (
    TAOBAO_WINDOW,
    behavior_totals,
    distinct_valid_rows,
    partition_windows,
)
from tests.pipeline import SMALL_TAKES, differences, replay, stored_windows, wait_for_members

pytestmark = pytest.mark.integration

CI_SEEDS = (7, 11)  # 7, 10 and 11 lost events on the code before the fix (a stale take); more in the soak
# (takes, seed): lost events on the code before issue 19's fix (partitions rebuilt without their
# checkpoints, which the broker's 4-partition checkpoints topic spread beyond partition 0). Small takes
# live in the soak: with one-message bulks the committed offset was the checkpoint's, and the rebuild
# from it happened to be exact, so no seed tried (2-4, 6, 8-11) failed there on that code.
CI_LIVE_SEEDS = (("default", 1),)
SOAK_SEEDS = int(os.environ.get("OMSTREAM_SOAK_SEEDS", "30"))
SOAK_FIRST_SEED = int(os.environ.get("OMSTREAM_SOAK_FIRST_SEED", "100"))  # to split a soak over processes
REPLAY_RATE = 2_000  # events/s: the 30,000-event sample takes 15 s, long enough for several kills
LIVE_RATE = 2_000  # events/s of the live-like runs: a pace the workers keep up with here
RESTART_AT_ONCE = 1.0  # seconds from a kill to the restart, as an operator (or a supervisor) does

Moment = Literal["any", "rows", "checkpoint"]
# "rows": as the next window rows reach Kafka (the take's checkpoint not yet sent, or being sent)
# "checkpoint": as the next checkpoint reaches Kafka (the others of the flush on their way, the
# messages it covers not yet acknowledged)
MOMENT_TOPICS = {"rows": "windows_topic", "checkpoint": "checkpoints_topic"}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds into the replay
    victim: str  # "sink", "worker-N", or "sink+worker-N" (both at once)
    restart_after: float  # 0: at once; otherwise past the dead member's session timeout
    moment: Moment = "any"  # after `at`, when exactly


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

    @classmethod
    def live(cls, seed: int, settings: Settings, duration: float) -> Plan:
        """A live-like run's faults: 1 or 2 workers, kills of a worker, the sink or both, at a random
        time or as rows or a checkpoint reach Kafka, restarts 1 s later or after the session expired."""
        rng = random.Random(seed)
        workers = rng.randint(1, 2)
        faults = []
        for _ in range(rng.randint(2, 4)):
            worker = f"worker-{rng.randrange(workers)}"
            victim = rng.choices([worker, "sink", f"sink+{worker}"], weights=[6, 1, 1])[0]
            delayed = rng.random() < 0.3
            restart_after = settings.session_timeout_s + rng.uniform(0.5, 2.0) if delayed else RESTART_AT_ONCE
            moment: Moment = rng.choice(["any", "rows", "checkpoint"])
            faults.append(
                Fault(round(rng.uniform(1.0, duration), 2), victim, round(restart_after, 2), moment)
            )
        return cls(workers, sorted(faults, key=lambda fault: fault.at))


class Follower:
    """Follows a topic (every partition) in a thread of its own: a fault can wait for its next record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.records = 0
        self._bootstrap = bootstrap
        self._topic = topic
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._follow()), daemon=True)

    def __enter__(self) -> Follower:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._thread.join(10)

    def next_record(self, timeout: float) -> None:
        """Until a record newer than the last one seen arrives (or `timeout` seconds pass)."""
        with self._changed:
            seen = self.records
            self._changed.wait_for(lambda: self.records > seen, timeout)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            self._topic, bootstrap_servers=self._bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
        )
        await consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=50)
                if batches:
                    with self._changed:
                        self.records += sum(map(len, batches.values()))
                        self._changed.notify_all()
        finally:
            await consumer.stop()


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


def inflict(services: Fleet, faults: list[Fault], followers: dict[str, Follower] | None = None) -> None:
    """Kill and restart as planned (from the replay's start); returns once every victim is back.
    `followers`: of the topics a fault's moment waits for (see `MOMENT_TOPICS`)."""
    began = time.monotonic()
    restarts: list[threading.Timer] = []
    for fault in faults:
        time.sleep(max(0.0, fault.at - (time.monotonic() - began)))
        victims = [name for name in fault.victim.split("+") if name in services.processes]
        if not victims:
            continue  # still down from an earlier fault
        if fault.moment != "any" and followers:
            followers[fault.moment].next_record(timeout=5.0)
        for victim in victims:
            services.kill(victim)
        for victim in victims:
            restart = threading.Timer(fault.restart_after, services.start, args=(victim,))
            restart.start()
            restarts.append(restart)
    for restart in restarts:
        restart.join()


def run_with_faults(seed: int, path: Path, settings: Settings, bootstrap: str) -> int:
    """One randomised run with small takes; returns how many processes it killed."""
    plan = Plan.draw(seed, settings, duration=30_000 / REPLAY_RATE)
    return run_plan(plan, seed, path, settings, bootstrap, REPLAY_RATE)


def run_live(seed: int, path: Path, settings: Settings, bootstrap: str) -> int:
    """One live-like run: the services on a bare broker, a paced stream they keep up with, kills
    timed by what reaches Kafka; returns how many processes it killed.

    The checkpoints topic is there before the services, with 4 partitions: what Tansu makes of a topic
    on its first use (here the follower's), and what a worker started by hand found before issue 19.
    The services make the other topics, but for the windows topic, which the test makes first (its
    follower would otherwise make it with 4 partitions)."""
    plan = Plan.live(seed, settings, duration=30_000 / LIVE_RATE)
    asyncio.run(ensure_topics(bootstrap, {settings.checkpoints_topic: 4, settings.windows_topic: 1}))
    with contextlib.ExitStack() as stack:
        followers = {
            moment: stack.enter_context(Follower(bootstrap, getattr(settings, topic)))
            for moment, topic in MOMENT_TOPICS.items()
        }
        return run_plan(plan, seed, path, settings, bootstrap, LIVE_RATE, followers, warm_up=True)


def run_plan(
    plan: Plan,
    seed: int,
    path: Path,
    settings: Settings,
    bootstrap: str,
    rate: float,
    followers: dict[str, Follower] | None = None,
    warm_up: bool = False,
) -> int:
    """Replay `path` at `rate` through the services while the plan's faults strike, then compare."""
    with fleet(settings, bootstrap, plan.workers) as services:
        if warm_up:  # the workers keep up from the first event, as with a live stream
            asyncio.run(
                wait_for_members(bootstrap, settings.consumer_group, plan.workers, 120, services.alive())
            )
        faults = threading.Thread(target=inflict, args=(services, plan.faults, followers))
        faults.start()
        emitted = replay(path, settings, bootstrap, Pacer(rate=rate))
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
    got_windows, got_funnels, totals = stored_windows(settings.resolved_clickhouse_dsn)
    where = f"seed {seed}: {plan}"
    assert totals == {b: n for b, n in behavior_totals(rows).items() if n}, where
    assert differences(got_windows, windows) == [], where
    assert differences(got_funnels, funnels) == [], where
    return services.kills


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=SMALL_TAKES)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_every_window_is_exact_after_random_kills(
    seed: int, ordered_file: Path, settings: Settings, bootstrap: str
) -> None:
    run_with_faults(seed, ordered_file, settings, bootstrap)


def live_settings(settings: Settings, takes: str) -> Settings:
    """The defaults a user gets, or small takes (a kill then lands with windows open and messages held)."""
    return settings if takes == "default" else settings.model_copy(update=SMALL_TAKES)


@pytest.mark.parametrize(("takes", "seed"), CI_LIVE_SEEDS)
def test_every_window_is_exact_after_kills_in_a_live_stream(
    takes: str, seed: int, ordered_file: Path, live: Settings
) -> None:
    with broker_for_test(live.state_dir) as bootstrap:  # bare: the services make their topics
        run_live(seed, ordered_file, live_settings(live, takes), bootstrap)


@pytest.fixture
def live(tmp_path: Path) -> Settings:
    """The suite's settings as they are (default takes), on a state dir of their own."""
    return Settings(state_dir=tmp_path / "live", kafka_bootstrap="", clickhouse_dsn="").with_window(
        TAOBAO_WINDOW
    )


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


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SEEDS * 240)
def test_soak_kills_in_a_live_stream(ordered_file: Path, live: Settings, tmp_path: Path) -> None:
    """Live-like runs, default takes for even seeds and small takes for odd ones."""
    kills = 0
    for seed in range(SOAK_FIRST_SEED, SOAK_FIRST_SEED + SOAK_SEEDS):
        takes = ("default", "small")[seed % 2]
        fresh = live_settings(live, takes).model_copy(update={"state_dir": tmp_path / f"seed-{seed}"})
        with broker_for_test(fresh.state_dir) as bootstrap:
            kills += run_live(seed, ordered_file, fresh, bootstrap)
        plan = Plan.live(seed, fresh, duration=30_000 / LIVE_RATE)
        print(f"seed {seed}, {takes} takes: exact; {plan}; {kills} kills so far", flush=True)
    print(f"{SOAK_SEEDS} seeds, {kills} kill points survived")
