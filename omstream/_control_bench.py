"""`omstream bench control`: publish-to-result latency and sustained command rate of the control plane.

It runs the embedded control plane (two IDCs of two masters, masterless Salt) on a fresh broker and
sends signed `ping`s to both IDCs: first one at a time (latency: publish until both IDCs' result
sets are back), then a burst of many at once (sustained commands/s until the last is complete).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from control.commands import Command, CommandResult
from omstream.ops import DEMO_OPERATOR, ResultFollower, ResultSets, new_command
from omstream.progress import progress_bar
from omstream.settings import Settings
from omstream.stack import broker, control_plane

IDCS = ["bj", "sh"]


class _Session:
    """One producer and one result follower for the whole run, so each command costs only its trip."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        self._follower = ResultFollower(bootstrap, settings.ops_results_topic)
        self._results: AsyncIterator[CommandResult] | None = None

    async def __aenter__(self) -> _Session:
        await self._producer.start()
        await self._follower.__aenter__()
        self._results = self._follower.results()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._follower.__aexit__()
        await self._producer.stop()

    def ping(self) -> Command:
        return new_command(self.settings, DEMO_OPERATOR, IDCS, "*", "ping", {})

    async def run(self, commands: list[Command], on_complete: Any = None) -> dict[str, float]:
        """Publish `commands`; returns when each completed (monotonic seconds), failing on any failure."""
        result_sets = ResultSets(commands)
        for command in commands:
            await self._producer.send(self.settings.ops_commands_topic, command.model_dump_json().encode())
        await self._producer.flush()
        completed: dict[str, float] = {}
        assert self._results is not None
        async with asyncio.timeout(120):
            while len(completed) < len(commands):
                result = await anext(self._results)
                if result.command_id in completed or not result_sets.add(result):
                    continue
                if result.status not in ("accepted", "succeeded"):
                    raise RuntimeError(f"command {result.command_id} {result.status}: {result.detail}")
                if result_sets.complete(result.command_id):
                    completed[result.command_id] = time.monotonic()
                    if on_complete:
                        on_complete(1)
        return completed


async def _measure(settings: Settings, bootstrap: str, sequential: int, burst: int) -> dict[str, Any]:
    async with _Session(settings, bootstrap) as session:
        await session.run([session.ping() for _ in range(5)])  # warm-up: connections, Salt's loaders
        latencies = []
        with progress_bar(total=sequential, unit="cmd", desc="latency") as bar:
            for _ in range(sequential):
                started = time.monotonic()
                completed = await session.run([session.ping()])
                latencies.append((max(completed.values()) - started) * 1000)
                bar.update(1)
        with progress_bar(total=burst, unit="cmd", desc="burst") as bar:
            commands = [session.ping() for _ in range(burst)]
            started = time.monotonic()
            completed = await session.run(commands, on_complete=bar.update)
        elapsed = max(completed.values()) - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "idcs": IDCS,
        "masters_per_idc": 2,
        "latency_commands": sequential,
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p99": round(quantiles[98], 1),
        "burst_commands": burst,
        "commands_per_s": round(burst / elapsed, 1),
        "idc_results_per_s": round(burst * len(IDCS) / elapsed, 1),
    }


def run_control_bench(sequential: int = 200, burst: int = 2000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="omstream-bench-control-") as root:
        settings = Settings(state_dir=Path(root) / "state", kafka_bootstrap="", clickhouse_dsn="")
        with broker(settings) as bootstrap, control_plane(settings, bootstrap):
            return asyncio.run(_measure(settings, bootstrap, sequential, burst))
