"""`omstream bench scale`: the seed's full pipeline at the data set's scale, on this machine.

Generate N Taobao-shaped events (100M is the real file's size), then run the embedded stack (broker,
sink, one worker) while the file is replayed in event time through it, until everything is stored;
then the whole JSON report, and the real-time windows (minute, hour, day) checked against the batch
computation over the raw events (`batch_series` against `realtime_series`). Every phase is timed;
the worker's, the sink's and the broker's memory are sampled as the events pass.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

import clickhouse
from omstream.bench.throughput import GENERATED_WINDOW, peak_rss_mb
from omstream.embedded.demo import NotDelivered, produced_targets
from omstream.embedded.progress import generate_with_progress, replay_with_progress
from omstream.embedded.stack import broker, pipeline, wait_until_processed
from omstream.settings import Settings
from report import build_report

_SAMPLE_S = 5.0
_STORE_TIMEOUT_S = 3_600.0
_KINDS = ("minute", "hour", "day")


@dataclass
class MemorySamples:
    """Resident memory (MB) of the services, sampled while the pipeline runs."""

    pids: dict[str, int]
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(_SAMPLE_S):
            sample = {name: _rss_mb(pid) for name, pid in self.pids.items()}
            self.samples.append({"s": round(time.monotonic() - started), **sample})

    def stop(self) -> None:
        self._stop.set()


def _rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "VmRSS: 0 kB")
    return round(int(line.split()[1]) / 1024)


def run_scale_bench(configured: Settings, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="omstream-bench-scale-") as folder:
        root = Path(folder)
        settings = configured.model_copy(
            update={"state_dir": root / "state", "kafka_bootstrap": "", "clickhouse_dsn": ""}
        ).with_window(GENERATED_WINDOW)
        phases: dict[str, float] = {}
        began = time.monotonic()
        data = root / "events.csv"
        generate_with_progress(data, events, seed=1, dirty=False)
        phases["generate_s"] = time.monotonic() - began
        memory = _run_pipeline(settings, data, phases)
        client = clickhouse.connect(settings.resolved_clickhouse_dsn)
        try:
            started = time.monotonic()
            build_report(client, settings.timezone, settings.funnel_conversion_seconds)
            phases["report_s"] = time.monotonic() - started
            started = time.monotonic()
            mismatches = _windows_against_batch(client, settings.timezone)
            phases["check_s"] = time.monotonic() - started
        finally:
            client.close()
        phases["total_s"] = time.monotonic() - began
    return {
        "events": events,
        **{name: round(seconds, 1) for name, seconds in phases.items()},
        "pipeline_events_per_s": round(events / phases["pipeline_s"]),
        "windows_exact": not mismatches,
        "window_mismatches": mismatches[:5],
        "peak_rss_mb": {name: max(s[name] for s in memory.samples) for name in memory.pids},
        "worker_rss_mb_over_time": _quarters(memory.samples, "worker"),
        "bench_peak_rss_mb": round(peak_rss_mb()),
    }


def _run_pipeline(settings: Settings, data: Path, phases: dict[str, float]) -> MemorySamples:
    """The stack from a fresh broker, the file replayed in event time while it runs, until all is stored."""
    with broker(settings) as bootstrap, pipeline(settings, bootstrap) as services:
        sink, worker = services
        memory = MemorySamples({"worker": worker.pid, "sink": sink.pid, "broker": _broker_pid(settings)})
        sampler = threading.Thread(target=memory.run, daemon=True)
        sampler.start()
        started = time.monotonic()
        emitted = asyncio.run(replay_with_progress(data, settings, bootstrap, time_ordered=True))
        phases["replay_s"] = time.monotonic() - started
        if emitted.failed:
            raise NotDelivered(f"{emitted.failed} events were not delivered: {emitted.errors[:3]}")
        targets = produced_targets(settings, emitted)
        wait_until_processed(settings, bootstrap, targets, _STORE_TIMEOUT_S, services)
        phases["pipeline_s"] = time.monotonic() - started
        memory.stop()
    return memory


def _broker_pid(settings: Settings) -> int:
    return int(json.loads((settings.state_dir / "broker.json").read_text())["pid"])


def _windows_against_batch(client: Client, timezone: str) -> list[dict[str, Any]]:
    """Every real-time window of each kind against the batch computation over the raw events."""
    span = clickhouse.query_rows(client, "data_span", tz=timezone)[0]
    days = {"tz": timezone, "from": span["first_day"], "to": span["last_day"]}
    mismatches: list[dict[str, Any]] = []
    for kind in _KINDS:
        stream = clickhouse.query_rows(client, "realtime_series", kind=kind, **days)
        batch = clickhouse.query_rows(client, "batch_series", kind=kind, **days)
        if stream != batch:
            keyed = {row["time"]: row for row in batch}
            mismatches += [
                {"kind": kind, "stream": row, "batch": keyed.get(row["time"])}
                for row in stream
                if keyed.get(row["time"]) != row
            ] or [{"kind": kind, "stream_windows": len(stream), "batch_windows": len(batch)}]
    return mismatches


def _quarters(samples: list[dict[str, float]], name: str) -> dict[str, float]:
    """The service's memory at each quarter of the run (flat memory: about the same from the first)."""
    if not samples:
        return {}
    return {f"{25 * q}%": samples[min(len(samples) - 1, len(samples) * q // 4)][name] for q in range(1, 5)}
