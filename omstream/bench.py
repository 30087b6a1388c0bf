"""`omstream bench …`: throughput figures measured on this machine, with the real broker and chDB."""

from __future__ import annotations

import asyncio
import re
import resource
import socket
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from omstream.demo import produced_targets, replay_file
from omstream.settings import Settings
from omstream.stack import broker, wait_until_consumed, worker_process
from stream.sources.generator import generate_csv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int, metric: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return 0.0
    found = re.search(rf"^{metric} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def peak_rss_mb(pid: int | None = None) -> float:
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0


def _time_sink(port: int, events: int, timeout: float = 600) -> tuple[float, float]:
    """(seconds from first stored event to the last, seconds from worker start to first stored event)."""
    started = time.monotonic()
    first = last = None
    while time.monotonic() - started < timeout:
        stored = _scrape(port, "omstream_events_stored_total")
        now = time.monotonic()
        if stored > 0 and first is None:
            first = now
        if stored >= events:
            last = now
            break
        time.sleep(0.05)
    if first is None or last is None:
        raise TimeoutError("the worker did not store every event in time")
    return last - first, first - started


def run_ingest_bench(events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="omstream-bench-") as folder:
        root = Path(folder)
        data = root / "events.csv"
        started = time.monotonic()
        generate_csv(data, events=events, seed=1)
        generate_s = time.monotonic() - started
        port = _free_port()
        settings = Settings(
            state_dir=root / "state", kafka_bootstrap="", clickhouse_dsn="", metrics_port=port
        )
        with broker(settings) as bootstrap:
            started = time.monotonic()
            emitted = asyncio.run(replay_file(data, settings, bootstrap, settings.pack_size))
            produce_s = time.monotonic() - started
            with worker_process(settings, bootstrap) as worker:
                sink_s, startup_s = _time_sink(port, emitted.sent)
                wait_until_consumed(
                    bootstrap, settings.consumer_group, produced_targets(settings, emitted), 60
                )
                worker_rss = peak_rss_mb(worker.pid)
    return {
        "events": events,
        "generate_events_per_min": round(events / generate_s * 60),
        "produce_events_per_s": round(emitted.sent / produce_s),
        "sink_events_per_s": round(emitted.sent / sink_s),
        "worker_start_to_first_store_s": round(startup_s, 2),
        "peak_rss_mb": {"producer": round(peak_rss_mb()), "worker": round(worker_rss)},
    }
