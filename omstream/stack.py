"""Running the pieces together: which broker to use, the worker process, and waiting for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from omstream.embedded import running_broker, stop_process, tansu_broker
from omstream.settings import Settings
from stream.kafka import BrokerUnreachable, ensure_topics, require_broker
from stream.processed import ProcessedWatcher


def topic_partitions(settings: Settings) -> dict[str, int]:
    return {
        settings.events_topic: settings.events_partitions,
        settings.dlq_topic: 1,
        settings.processed_topic: 1,
    }


def resolve_bootstrap(settings: Settings) -> str:
    """KAFKA_BOOTSTRAP when set, else the broker of a running `omstream up`; fails clearly otherwise."""
    bootstrap = settings.kafka_bootstrap or running_broker(settings.state_dir)
    if not bootstrap:
        raise BrokerUnreachable(
            f"no Kafka broker: set KAFKA_BOOTSTRAP or start `omstream up` (state dir {settings.state_dir})"
        )
    require_broker(bootstrap)
    return bootstrap


@contextlib.contextmanager
def broker(settings: Settings) -> Iterator[str]:
    """The configured broker, or an embedded one for the duration of the block; topics exist on exit."""
    if settings.kafka_bootstrap:
        require_broker(settings.kafka_bootstrap)
        asyncio.run(ensure_topics(settings.kafka_bootstrap, topic_partitions(settings)))
        yield settings.kafka_bootstrap
        return
    with tansu_broker(settings.state_dir) as bootstrap:
        asyncio.run(ensure_topics(bootstrap, topic_partitions(settings)))
        yield bootstrap


def service_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump(
        mode="json", exclude={"kafka_bootstrap", "clickhouse_dsn"}
    ).items():
        env[f"OMSTREAM_{name.upper()}"] = str(value)
    env["KAFKA_BOOTSTRAP"] = bootstrap
    env["CLICKHOUSE_DSN"] = settings.clickhouse_dsn
    env["OMSTREAM_STATE_DIR"] = str(settings.state_dir.resolve())
    return env


@contextlib.contextmanager
def worker_process(
    settings: Settings, bootstrap: str, name: str = "worker"
) -> Iterator[subprocess.Popen[bytes]]:
    """An `omstream worker` child process, stopped (SIGTERM, then SIGKILL) when the block ends."""
    log_path = settings.state_dir / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "omstream", "worker"],
            env=service_env(settings, bootstrap),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield process
        finally:
            stop_process(process, grace=20.0)


def wait_until_processed(
    settings: Settings,
    bootstrap: str,
    targets: dict[tuple[str, int], int],
    timeout: float,
    alive: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until the workers have stored each (topic, partition) up to its last produced offset.

    Targets come from the producer's own acknowledged offsets, not from the broker's end offsets,
    which Tansu reports low after batched writes.
    """

    def worker_alive() -> None:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(
                f"the worker exited with code {alive.returncode}; see its log in the state dir"
            )

    async def follow() -> None:
        async with ProcessedWatcher(bootstrap, settings.processed_topic) as watcher:
            await watcher.wait(targets, timeout, worker_alive)
            # the workers' own dead letters (late events, bad input from other emitters) come last
            await watcher.wait(await watcher.dead_letter_target(settings.dlq_topic), timeout, worker_alive)

    asyncio.run(follow())


def state_path(settings: Settings, name: str) -> Path:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return settings.state_dir / name
