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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from control.client import OpsClient, new_command
from masters.keys import load_private_key
from omstream.bench import BenchFailed
from omstream.embedded.control_plane import DEMO_OPERATOR, control_plane
from omstream.embedded.progress import progress_bar
from omstream.embedded.stack import broker
from omstream.services import control_public_key, ops_topics
from omstream.settings import Settings

IDCS = ["bj", "sh"]


class _Pings:
    """Signed pings to both IDCs, run through one client for the whole bench, so each costs only its trip."""

    def __init__(self, client: OpsClient, keys_dir: Path) -> None:
        self._client = client
        self._key = load_private_key(keys_dir, DEMO_OPERATOR)

    async def run(self, count: int, on_complete: Callable[[int], object] | None = None) -> list[float]:
        """Run `count` pings at once; returns when each completed (monotonic s); fails on any failure."""
        commands = [new_command(self._key, DEMO_OPERATOR, IDCS, "*", "ping", {}) for _ in range(count)]
        completed: list[float] = []

        def done(_: str) -> None:
            completed.append(time.monotonic())
            if on_complete:
                on_complete(1)

        async for result in self._client.run(commands, timeout=120, on_complete=done):
            if result.status not in ("accepted", "succeeded"):
                raise BenchFailed(f"command {result.command_id} {result.status}: {result.detail}")
        if len(completed) < count:
            raise BenchFailed(f"{count - len(completed)} of {count} pings got no result")
        return completed


async def _measure(settings: Settings, bootstrap: str, sequential: int, burst: int) -> dict[str, Any]:
    async with OpsClient(bootstrap, ops_topics(settings), control_public_key(settings)) as client:
        pings = _Pings(client, settings.keys_dir)
        await pings.run(5)  # warm-up: connections, Salt's loaders
        latencies = []
        with progress_bar(total=sequential, unit="cmd", desc="latency") as bar:
            for _ in range(sequential):
                started = time.monotonic()
                completed = await pings.run(1)
                latencies.append((max(completed) - started) * 1000)
                bar.update(1)
        with progress_bar(total=burst, unit="cmd", desc="burst") as bar:
            started = time.monotonic()
            completed = await pings.run(burst, on_complete=bar.update)
        elapsed = max(completed) - started
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
