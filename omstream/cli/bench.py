"""`omstream bench …`: benchmarks (performance targets live here, not in tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from omstream.cli._common import F, one_line_errors, pass_settings, terminate_as_interrupt
from omstream.settings import Settings


@click.group()
def bench() -> None:
    """Benchmarks (performance targets live here, not in tests)."""


def _events(default: int) -> Callable[[F], F]:
    return click.option(
        "--events", "-n", default=default, show_default=True, type=click.IntRange(min=1), help="events to use"
    )


json_option = click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")


def _print_figures(result: dict[str, Any], as_json: bool) -> None:
    click.echo(json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))


@bench.command("ingest")
@_events(1_000_000)
@json_option
@one_line_errors
@pass_settings
def bench_ingest(settings: Settings, events: int, as_json: bool) -> None:
    """Generate, produce and sink rates, with peak RSS."""
    from omstream.bench.throughput import run_ingest_bench

    result = run_ingest_bench(settings, events)
    _print_figures(result, as_json)


@bench.command("stream")
@_events(1_000_000)
@json_option
@one_line_errors
@pass_settings
def bench_stream(settings: Settings, events: int, as_json: bool) -> None:
    """End-to-end rates: batched beside a plain consumer, one event per message beside Quix Streams,
    Pathway and Bytewax."""
    from omstream.bench.throughput import run_stream_bench

    terminate_as_interrupt()
    result = run_stream_bench(settings, events)
    _print_figures(result, as_json)


@bench.command("queries")
@_events(2_000_000)
@json_option
@one_line_errors
@pass_settings
def bench_queries(settings: Settings, events: int, as_json: bool) -> None:
    """The sink's insert rate alone, and while readers query it over its read-only HTTP endpoint."""
    from omstream.bench.throughput import run_query_bench

    terminate_as_interrupt()
    result = run_query_bench(settings, events)
    _print_figures(result, as_json)


@bench.command("scale")
@_events(100_000_000)
@json_option
@one_line_errors
@pass_settings
def bench_scale(settings: Settings, events: int, as_json: bool) -> None:
    """The full pipeline at the data set's scale: generate, replay, windows, ClickHouse, report, check."""
    from omstream.bench.scale import run_scale_bench

    terminate_as_interrupt()
    result = run_scale_bench(settings, events)
    _print_figures(result, as_json)


@bench.command("freshness")
@click.option("--rates", default="2000,10000,20000", show_default=True, help="events/s, comma-separated")
@click.option("--seconds", default=60.0, show_default=True, help="of steady load per rate")
@click.option("--pack", default=250, show_default=True, help="events per Kafka message")
@json_option
@one_line_errors
def bench_freshness(rates: str, seconds: float, pack: int, as_json: bool) -> None:
    """Send-to-visible times (raw table, minute window) through `omstream up`'s query endpoint."""
    from omstream.bench.live import run_freshness_bench

    terminate_as_interrupt()
    result = run_freshness_bench([float(rate) for rate in rates.split(",")], seconds, pack)
    _print_figures(result, as_json)


@bench.command("soak")
@click.option("--rate", default=20_000.0, show_default=True, help="events/s")
@click.option("--minutes", default=20.0, show_default=True, help="how long the steady load runs")
@click.option("--speedup", default=1.0, show_default=True, help="event time runs this many times faster")
@click.option("--sample", "sample_s", default=30.0, show_default=True, help="seconds between samples")
@json_option
@one_line_errors
def bench_soak(rate: float, minutes: float, speedup: float, sample_s: float, as_json: bool) -> None:
    """`omstream up` under a steady live load: every process's RSS and the disk over time."""
    from omstream.bench.live import run_soak_bench

    terminate_as_interrupt()
    result = run_soak_bench(rate, minutes, speedup, sample_s)
    _print_figures(result, as_json)


@bench.command("report")
@_events(10_000_000)
@json_option
@one_line_errors
@pass_settings
def bench_report(settings: Settings, events: int, as_json: bool) -> None:
    """Time the whole JSON report over generated events in a fresh chDB."""
    from omstream.bench.throughput import run_report_bench

    result = run_report_bench(events, settings.timezone, settings.funnel_conversion_seconds)
    _print_figures(result, as_json)


@bench.command("alerts")
@click.option("--events", "-n", default=30_000_000, show_default=True, help="generated events per seed")
@click.option("--seeds", default="1,2,3", show_default=True, help="comma-separated generator seeds")
@click.option(
    "--anomalies", default=12, show_default=True, type=click.IntRange(min=1), help="injected per seed"
)
@json_option
@one_line_errors
@pass_settings
def bench_alerts(settings: Settings, events: int, seeds: str, anomalies: int, as_json: bool) -> None:
    """Alert quality on generated days with injected anomalies: precision, recall, delay per metric."""
    from omstream.bench.alerts import render_alerts_bench, run_alerts_bench
    from omstream.services import alert_rules

    numbers = [int(seed) for seed in seeds.split(",")]
    result = run_alerts_bench(
        alert_rules(settings), events, numbers, anomalies, lambda line: click.echo(line, err=True)
    )
    click.echo(json.dumps(result) if as_json else render_alerts_bench(result))


@bench.command("control")
@click.option(
    "--sequential", default=200, show_default=True, type=click.IntRange(min=2), help="pings one at a time"
)
@click.option(
    "--burst", default=2000, show_default=True, type=click.IntRange(min=1), help="commands sent at once"
)
@json_option
@one_line_errors
def bench_control(sequential: int, burst: int, as_json: bool) -> None:
    """Control plane: publish-to-result latency of pings to both IDCs, and sustained commands/s."""
    from omstream.bench.control import run_control_bench

    terminate_as_interrupt()
    result = run_control_bench(sequential, burst)
    _print_figures(result, as_json)
