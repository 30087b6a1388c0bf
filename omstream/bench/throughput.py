"""`omstream bench …`: throughput figures measured on this machine, with the real broker and chDB."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from clickhouse_connect.driver.client import Client
from pydantic import SecretStr

import clickhouse
from omstream.bench import BenchFailed
from omstream.bench._peer import PEER_RESULT_PREFIX, hour_of
from omstream.embedded.progress import replay_with_progress
from omstream.embedded.stack import (
    broker,
    free_port,
    required_stages,
    service_process,
    worker_process,
)
from omstream.embedded.supervisor import all_alive, stop_process
from omstream.settings import Settings
from stream.emitter import EmitReport
from stream.events import BEHAVIORS, EVENT_COLUMNS, Event, FixedRange
from stream.metrics import EVENTS_IN_TOTAL, EVENTS_STORED_TOTAL
from stream.processed import ProcessedWatcher
from stream.sinks.clickhouse import RAW_EVENTS
from stream.sources.generator import generate_chunks, generate_csv
from stream.sources.taobao import TAOBAO_END, TAOBAO_START, read_csv, sort_by_time

GENERATED_WINDOW = FixedRange(TAOBAO_START, TAOBAO_END)  # the generator's days, as the real file's
_POLL_S = 0.2  # how often the end of a run is checked for
_SCRAPE_S = 1.0  # scraping a service's metrics costs it CPU: not more often than this
_SINGLE_MAX_EVENTS = 1_000_000  # one event per message: producing them is slower than consuming
_RUN_TIMEOUT_S = 600.0
_STALL_TIMEOUT_S = 120.0  # a crashed Faust agent can leave its process alive, doing nothing


@dataclass(frozen=True)
class Sample:
    """How many events a consumer had counted at a moment (`time.monotonic()`), and a peak RSS then."""

    at: float
    count: float
    rss_mb: float = 0.0


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
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0


def _watch_sink(
    port: int, events: int, process: subprocess.Popen[bytes], timeout: float = _RUN_TIMEOUT_S
) -> list[Sample]:
    """Scrape a sink's stored-events counter from now until it reaches `events`; the first sample is now."""
    samples = [Sample(time.monotonic(), 0.0)]
    while samples[-1].count < events:
        all_alive([process])
        if time.monotonic() - samples[0].at > timeout:
            raise BenchFailed("the sink did not store every event in time")
        time.sleep(_POLL_S)
        samples.append(Sample(time.monotonic(), _scrape(port, EVENTS_STORED_TOTAL)))
    return samples


def _first_counting(samples: Sequence[Sample]) -> int:
    return next(index for index, sample in enumerate(samples) if sample.count > 0)


def first_to_last_rate(samples: Sequence[Sample]) -> float:
    """Events per second from the first sample that counted events to the last one.

    Events counted by the first such sample took time before it, so they are left out, unless they
    are more than half of all (a short run): then the rate runs from the sample before, which
    counted none, and includes whatever else happened in between.
    """
    first, end = _first_counting(samples), samples[-1]
    start = samples[first] if samples[first].count <= end.count / 2 else samples[first - 1]
    return (end.count - start.count) / (end.at - start.at)


def run_ingest_bench(configured: Settings, events: int) -> dict[str, Any]:
    """Generate, produce, then store raw events with the ClickHouse sink alone (no windows)."""
    with tempfile.TemporaryDirectory(prefix="omstream-bench-") as folder:
        root = Path(folder)
        data = root / "events.csv"
        started = time.monotonic()
        generate_csv(data, events=events, seed=1)
        generate_s = time.monotonic() - started
        settings = _bench_settings(configured, root / "state")
        with broker(settings) as bootstrap:
            started = time.monotonic()
            emitted = asyncio.run(replay_with_progress(data, settings, bootstrap))
            produce_s = time.monotonic() - started
            with service_process(settings, bootstrap, "sink", "sink") as sink:
                samples = _watch_sink(settings.metrics_port, emitted.sent, sink)
                sink_rss = peak_rss_mb(sink.pid)
    first = samples[_first_counting(samples)]
    return {
        "events": events,
        "generate_events_per_min": round(events / generate_s * 60),
        "produce_events_per_s": round(emitted.sent / produce_s),
        "sink_events_per_s": round(first_to_last_rate(samples)),
        "sink_start_to_first_store_s": round(first.at - samples[0].at, 2),
        "peak_rss_mb": {"producer": round(peak_rss_mb()), "sink": round(sink_rss)},
    }


# `omstream bench stream`: the pipeline end to end, against a plain consumer and a bare Faust agent.


@dataclass(frozen=True)
class PipelineSample:
    """The sink's and the worker's counters at a moment, and the worker's peak RSS so far."""

    at: float
    worker: float  # events whose take the worker has fully processed (windows sent to Kafka)
    sink: float  # events the sink has written to the raw table
    rss_mb: float


@dataclass(frozen=True)
class PipelineRun:
    """A sink and a worker over pre-produced messages, followed until all is stored, windows included.

    The first sample is the start of both services; the last is when `omstream.processed` showed
    every message stored raw and windowed (what `omstream demo` waits for).
    """

    samples: list[PipelineSample]
    events: int
    worker_rss_mb: float
    sink_rss_mb: float

    def series(self, counter: str, until_done: bool) -> list[Sample]:
        """One counter as samples, ending when it reached every event (or, with `until_done`, when
        everything was stored); all events count as done at the last sample."""
        series = [Sample(s.at, min(getattr(s, counter), self.events), s.rss_mb) for s in self.samples]
        series[-1] = Sample(series[-1].at, self.events, series[-1].rss_mb)
        end = (
            len(series) - 1 if until_done else next(i for i, s in enumerate(series) if s.count >= self.events)
        )
        return series[: end + 1]

    def rates(self) -> dict[str, int]:
        return {
            "events_per_s": round(first_to_last_rate(self.series("worker", until_done=True))),
            "worker_events_per_s": round(first_to_last_rate(self.series("worker", until_done=False))),
            "sink_events_per_s": round(first_to_last_rate(self.series("sink", until_done=False))),
        }

    def start_to_first_event_s(self) -> float:
        series = self.series("worker", until_done=True)
        return series[_first_counting(series)].at - series[0].at


def run_stream_bench(configured: Settings, events: int) -> dict[str, Any]:
    """End-to-end rates, batched and one event per message, each beside its reference.

    Each run has its own embedded broker, chDB and state dir. Messages are produced before any
    consumer starts, and the reference consumers run before the pipeline, not beside it.
    """
    with tempfile.TemporaryDirectory(prefix="omstream-bench-stream-") as folder:
        root = Path(folder)
        batched_data = _time_ordered_csv(root, "batched", events)
        batched, run = _batched_run(_bench_settings(configured, root / "batched"), batched_data)
        single_data = _time_ordered_csv(root, "single", min(events, _SINGLE_MAX_EVENTS))
        single = _single_run(_bench_settings(configured, root / "single"), single_data)
    return {
        "batched": batched,
        "single": single,
        "start_to_first_event_s": round(run.start_to_first_event_s(), 2),
        "peak_rss_mb": round(run.worker_rss_mb),
        "sink_peak_rss_mb": round(run.sink_rss_mb),
        "rss_mb_by_events": _rss_by_events(run.series("worker", until_done=True)),
    }


def _time_ordered_csv(root: Path, name: str, events: int) -> Path:
    """Generated Taobao-shaped events in event-time order, as replay (and windows) expect them."""
    raw, ordered = root / f"{name}.csv", root / f"{name}.time-ordered.csv"
    generate_csv(raw, events=events, seed=1)
    sort_by_time(raw, ordered)
    raw.unlink()
    return ordered


def _bench_settings(configured: Settings, state_dir: Path) -> Settings:
    """The configured settings on the embedded broker and chDB, in a state dir of the bench's own,
    accepting the generated data's days."""
    return configured.model_copy(
        update={
            "state_dir": state_dir,
            "kafka_bootstrap": "",
            "clickhouse_dsn": "",
            "metrics_port": free_port(),
        }
    ).with_window(GENERATED_WINDOW)


def _produce(data: Path, settings: Settings, bootstrap: str, pack: int) -> EmitReport:
    emitted = asyncio.run(replay_with_progress(data, settings, bootstrap, pack))
    if emitted.failed or not emitted.sent:
        raise BenchFailed(f"produced {emitted.sent} events, {emitted.failed} failed: {emitted.errors[:3]}")
    return emitted


def _batched_run(settings: Settings, data: Path) -> tuple[dict[str, Any], PipelineRun]:
    with broker(settings) as bootstrap:
        emitted = _produce(data, settings, bootstrap, settings.pack_size)
        baseline = asyncio.run(_plain_consumer(bootstrap, settings.events_topic, emitted.sent))
        run = _pipeline_run(settings, bootstrap, emitted)
    rates, baseline_rate = run.rates(), first_to_last_rate(baseline)
    figures = {
        "events": emitted.sent,
        "messages": emitted.messages,
        **rates,
        "baseline_events_per_s": round(baseline_rate),
        "ratio": round(rates["events_per_s"] / baseline_rate, 4),
    }
    return figures, run


def _single_run(settings: Settings, data: Path) -> dict[str, Any]:
    """One event per message: our pipeline beside the peers, each reading the same messages from the
    start: Quix Streams (its bare loop, and the hourly all-users count), and Pathway's and Bytewax's
    hourly PV/UV, checked exact against the events."""
    with broker(settings) as bootstrap:
        emitted = _produce(data, settings, bootstrap, pack=1)
        peer_loop = _quix_peer(settings, bootstrap, emitted.messages, "loop")
        peer_count = _quix_peer(settings, bootstrap, emitted.messages, "count")
        pv_uv_peers = {name: _run_peer(settings, bootstrap, name, emitted.messages) for name in PV_UV_PEERS}
        run = _pipeline_run(settings, bootstrap, emitted)
    expected = expected_hourly(data, settings)
    for name, result in pv_uv_peers.items():
        check_hourly(name, result, expected, emitted.messages)
    rates, peer_rate = run.rates(), first_to_last_rate(peer_count.samples)
    peer_rates = {name: first_to_last_rate(result.samples) for name, result in pv_uv_peers.items()}
    return {
        "events": emitted.sent,
        "messages": emitted.messages,
        **rates,
        "peer_loop_events_per_s": round(first_to_last_rate(peer_loop.samples)),
        "peer_events_per_s": round(peer_rate),
        "ratio_to_peer": round(rates["events_per_s"] / peer_rate, 3),
        **{f"{name}_events_per_s": round(rate) for name, rate in peer_rates.items()},
        **{f"ratio_to_{name}": round(rates["events_per_s"] / rate, 3) for name, rate in peer_rates.items()},
    }


def _pipeline_run(settings: Settings, bootstrap: str, emitted: EmitReport) -> PipelineRun:
    """Start the sink and a worker (each with its own metrics port) and follow them to the end."""
    sink_settings, worker_settings = (settings.model_copy(update={"metrics_port": free_port()}) for _ in "ab")
    ports = (worker_settings.metrics_port, sink_settings.metrics_port)
    with (
        service_process(sink_settings, bootstrap, "sink", "sink") as sink,
        worker_process(worker_settings, bootstrap) as worker,
    ):
        samples = asyncio.run(_follow_pipeline(settings, bootstrap, emitted, ports, (worker, sink)))
        return PipelineRun(samples, emitted.sent, peak_rss_mb(worker.pid), peak_rss_mb(sink.pid))


async def _follow_pipeline(
    settings: Settings,
    bootstrap: str,
    emitted: EmitReport,
    ports: tuple[int, int],
    services: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]],
) -> list[PipelineSample]:
    """Scrape the worker and the sink until `omstream.processed` shows every message stored."""
    targets = {(settings.events_topic, p): last for p, last in emitted.last_offsets.items()}
    stages = required_stages(settings)
    samples = [PipelineSample(time.monotonic(), 0.0, 0.0, 0.0)]
    async with ProcessedWatcher(bootstrap, settings.processed_topic) as watcher:
        while True:
            await watcher.poll(timeout_ms=round(_POLL_S * 1000))
            done = not watcher.behind(targets, stages)
            # until the worker's first events, often: that moment is a figure of its own
            interval = _SCRAPE_S if samples[-1].worker else _POLL_S
            if done or time.monotonic() - samples[-1].at >= interval:
                worker, sink = _scrape(ports[0], EVENTS_IN_TOTAL), _scrape(ports[1], EVENTS_STORED_TOTAL)
                samples.append(PipelineSample(time.monotonic(), worker, sink, peak_rss_mb(services[0].pid)))
            if done:
                return samples
            _check_progress(samples, services)


def _check_progress(samples: Sequence[PipelineSample], services: Sequence[subprocess.Popen[bytes]]) -> None:
    all_alive(services)
    now, last = time.monotonic(), samples[-1]
    if now - samples[0].at > _RUN_TIMEOUT_S:
        raise BenchFailed(f"the pipeline did not store every event within {_RUN_TIMEOUT_S:.0f} s")
    moved = next((s.at for s in reversed(samples) if (s.worker, s.sink) != (last.worker, last.sink)), None)
    if now - (moved or samples[0].at) > _STALL_TIMEOUT_S:
        raise BenchFailed(f"the pipeline made no progress for {_STALL_TIMEOUT_S:.0f} s; see the service logs")


def _rss_by_events(samples: Sequence[Sample], points: int = 4) -> dict[str, int]:
    """The worker's peak RSS so far (MB) once it had processed 1/points, 2/points … of the events."""
    total = samples[-1].count
    marks = (next(s for s in samples if s.count >= total * step / points) for step in range(1, points + 1))
    return {str(round(sample.count)): round(sample.rss_mb) for sample in marks}


def count_events(value: bytes) -> int:
    """Events in one message: a JSON object is one, a JSON array is its length."""
    body = orjson.loads(value)
    return len(body) if isinstance(body, list) else 1


async def _plain_consumer(
    bootstrap: str, topic: str, events: int, timeout: float = _RUN_TIMEOUT_S
) -> list[Sample]:
    """The baseline: a groupless aiokafka consumer from the earliest offset, decoding each message."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        samples = [Sample(time.monotonic(), 0)]
        while samples[-1].count < events:
            if time.monotonic() - samples[0].at > timeout:
                raise BenchFailed("the plain consumer did not read every event in time")
            fetched = await consumer.getmany(timeout_ms=500)
            counted = sum(count_events(record.value) for records in fetched.values() for record in records)
            samples.append(Sample(time.monotonic(), samples[-1].count + counted))
    finally:
        await consumer.stop()
    return samples


@dataclass(frozen=True)
class PeerResult:
    """What a peer printed: messages seen over time and, from a PV/UV peer, its hourly PV/UV."""

    samples: list[Sample]
    hourly: dict[int, tuple[int, int]]


# a peer's module prefix: its library, and the package that library installs
PEER_LIBRARIES = {
    "quix": ("Quix Streams", "quixstreams"),
    "pathway": ("Pathway", "pathway"),
    "bytewax": ("Bytewax", "bytewax"),
}
PV_UV_PEERS = ("pathway", "bytewax")


def _quix_peer(settings: Settings, bootstrap: str, messages: int, mode: str) -> PeerResult:
    """Quix Streams in `mode` (`loop` or `count`) over the events topic's messages."""
    return _run_peer(settings, bootstrap, "quix", messages, mode, str(settings.state_dir / "quix"))


def _run_peer(
    settings: Settings, bootstrap: str, name: str, messages: int, *args: str, timeout: float = _RUN_TIMEOUT_S
) -> PeerResult:
    """Run `omstream.bench.{name}_peer` over the events topic's `messages` and read what it printed."""
    library, package = PEER_LIBRARIES[name]
    if importlib.util.find_spec(package) is None:
        raise BenchFailed(f"a peer of this bench is {library}: pip install -e '.[bench]'")
    label = " ".join((library, *args))
    log_path = settings.state_dir / f"{'-'.join((name, *args[:1]))}.log"  # e.g. quix-loop.log
    command = [sys.executable, "-m", f"omstream.bench.{name}_peer", bootstrap, settings.events_topic]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*command, str(messages), *args], stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
        )
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise BenchFailed(f"the {label} peer did not read every message in time") from error
        finally:
            stop_process(process)
    found = re.search(rf"{PEER_RESULT_PREFIX}(.+)$", out.decode(errors="replace"), re.MULTILINE)
    if found is None:
        raise BenchFailed(f"the {label} peer exited with code {process.returncode}: {_last_line(log_path)}")
    result = json.loads(found.group(1))
    hourly = {int(hour): (pv, uv) for hour, (pv, uv) in result.get("hourly", {}).items()}
    return PeerResult([Sample(at, count) for at, count in result["samples"]], hourly)


def expected_hourly(data: Path, settings: Settings) -> dict[int, tuple[int, int]]:
    """The hourly PV/UV of the events a replay of `data` sends, counted here with plain Python."""
    users: dict[int, set[int]] = {}
    views: dict[int, int] = {}
    for row in read_csv(data, settings.accept_range):
        if isinstance(row, Event):
            hour = hour_of(row.ts)
            users.setdefault(hour, set()).add(row.user_id)
            views[hour] = views.get(hour, 0) + 1
    return {hour: (views[hour], len(users[hour])) for hour in sorted(views)}


def check_hourly(name: str, result: PeerResult, expected: dict[int, tuple[int, int]], messages: int) -> None:
    """A peer's hourly PV must add up to every message, and each hour's PV/UV be the expected one."""
    library = PEER_LIBRARIES[name][0]
    counted = sum(pv for pv, _ in result.hourly.values())
    if counted != messages:
        raise BenchFailed(f"{library}'s hourly PV add up to {counted} events, not {messages}")
    wrong = sorted(
        hour
        for hour in expected.keys() | result.hourly.keys()
        if result.hourly.get(hour) != expected.get(hour)
    )
    if wrong:
        hour = wrong[0]
        raise BenchFailed(
            f"{library}'s PV/UV differ in {len(wrong)} hours, first at {hour}: "
            f"{result.hourly.get(hour)} instead of {expected.get(hour)}"
        )


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return lines[-1] if lines else "no log"


# `omstream bench report`: the whole JSON report over generated events in a fresh chDB.

REPORT_TARGET_S = 30.0  # the whole report over the Taobao data set's size, 100M events (and peak RSS...)
REPORT_TARGET_RSS_MB = 8_192  # ... of at most 8 GB)
_GENERATED_COLUMNS = list(EVENT_COLUMNS[:5])  # the generator's: no channel, device or event id


def load_generated(client: Client, events: int, seed: int) -> None:
    """Insert `events` generated Taobao-shaped events into the raw events table, one column-oriented
    insert per chunk."""
    for chunk in generate_chunks(events, seed):
        behaviors = [BEHAVIORS[code] for code in chunk.behavior.tolist()]
        columns = [chunk.user_id.tolist(), chunk.item_id.tolist(), chunk.category_id.tolist(), behaviors]
        client.insert(
            RAW_EVENTS, [*columns, chunk.ts.tolist()], column_names=_GENERATED_COLUMNS, column_oriented=True
        )


def run_report_bench(events: int, timezone: str, funnel_window_s: int) -> dict[str, Any]:
    """Generate `events` into a temporary chDB, then time `build_report` (JSON, LTV inputs included)."""
    from report import ReportOptions, build_report

    options = ReportOptions(arpu=1.0, cac=50.0)
    with tempfile.TemporaryDirectory(prefix="omstream-bench-report-") as folder:
        client = clickhouse.connect(f"chdb://{Path(folder) / 'chdb'}")
        try:
            clickhouse.migrate(client)
            started = time.monotonic()
            load_generated(client, events, seed=1)
            load_s = time.monotonic() - started
            started = time.monotonic()
            report = build_report(client, timezone, funnel_window_s, options)
            report_json = json.dumps(report.as_json(), default=str)
            report_s = time.monotonic() - started
        finally:
            client.close()
    return {
        "events": events,
        "load_events_per_s": round(events / load_s),
        "report_s": round(report_s, 2),
        "report_target_s": REPORT_TARGET_S,
        "within_target": report_s <= REPORT_TARGET_S and peak_rss_mb() <= REPORT_TARGET_RSS_MB,
        "report_bytes": len(report_json),
        "peak_rss_mb": round(peak_rss_mb()),
    }


# `omstream bench queries`: what readers of the query endpoint cost the sink's insert rate.

READER_PAUSES_S = {"alone": None, "dashboards": 10.0, "back_to_back": 0.0}


def run_query_bench(configured: Settings, events: int, repeats: int = 3) -> dict[str, Any]:
    """The sink storing the same produced events into a fresh chDB, `repeats` times per load, loads
    taking turns (the machine's other work spreads over all of them): with nobody reading, while a
    reader runs the whole report every 10 s (about what a few refreshing dashboards ask), and while
    one runs it back to back; readers over the sink's query endpoint. Medians per load."""
    with tempfile.TemporaryDirectory(prefix="omstream-bench-queries-") as folder:
        root = Path(folder)
        data = root / "events.csv"
        generate_csv(data, events=events, seed=1)
        settings = _bench_settings(configured, root / "state")
        rates: dict[str, list[int]] = {load: [] for load in READER_PAUSES_S}
        with broker(settings) as bootstrap:
            emitted = _produce(data, settings, bootstrap, settings.pack_size)
            turns = [load for _ in range(repeats) for load in READER_PAUSES_S]
            for run, load in enumerate(turns):
                endpoint = {"query_port": free_port(), "query_password": SecretStr(secrets.token_urlsafe(16))}
                sink = _bench_settings(configured, root / f"run-{run}").model_copy(
                    update={"sink_group": f"bench-{run}", **endpoint}
                )
                rates[load].append(
                    _sink_rate_while_reading(sink, bootstrap, emitted.sent, READER_PAUSES_S[load])
                )
    medians = {load: round(statistics.median(runs)) for load, runs in rates.items()}
    return {
        "events": events,
        "sink_events_per_s": medians,
        "runs": rates,
        "cost_percent": {
            load: round(100 * (1 - rate / medians["alone"]), 1)
            for load, rate in medians.items()
            if load != "alone"
        },
    }


def _sink_rate_while_reading(settings: Settings, bootstrap: str, events: int, pause: float | None) -> int:
    """The sink's store rate of `events` produced events, with a reader pausing `pause` s between reports."""
    stop = threading.Event()
    with service_process(settings, bootstrap, "sink", "sink") as sink:
        reader = threading.Thread(target=_read_reports, args=(settings, stop, pause), daemon=True)
        if pause is not None:
            reader.start()
        try:
            samples = _watch_sink(settings.metrics_port, events, sink)
        finally:
            stop.set()
            if reader.is_alive():
                reader.join()
    return round(first_to_last_rate(samples))


def _read_reports(settings: Settings, stop: threading.Event, pause: float) -> None:
    """Build the report over the sink's query endpoint, pausing `pause` s after each, until `stop`."""
    from report import NoSchema, build_report

    endpoint = f"127.0.0.1:{settings.query_port}"
    while not _answers(f"http://{endpoint}/ping"):  # the sink is starting
        if stop.wait(0.1):
            return
    client = clickhouse.connect(
        f"http://omstream:{settings.query_password.get_secret_value()}@{endpoint}/omstream"
    )
    try:
        while not stop.is_set():
            with contextlib.suppress(NoSchema):  # before the sink's first migration
                build_report(client, settings.timezone, settings.funnel_conversion_seconds)
            stop.wait(pause)
    finally:
        client.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5):
            return True
    except OSError:
        return False
