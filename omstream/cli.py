"""The `omstream` command line."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

import clickhouse
from omstream.settings import Settings
from stream.kafka import BrokerUnreachable

F = TypeVar("F", bound=Callable[..., Any])

_EXPECTED_ERRORS = (
    BrokerUnreachable,
    clickhouse.ClickHouseUnavailable,
    FileNotFoundError,
    TimeoutError,
    RuntimeError,
    ValueError,
)


def one_line_errors(command: F) -> F:
    """Bad input or an unreachable server ends the command with one clear line, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ValidationError as error:
            raise click.ClickException(f"invalid settings: {error.errors()[0]['msg']}") from error
        except _EXPECTED_ERRORS as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise click.ClickException(message) from error

    return wrapper  # type: ignore[return-value]


def _terminate_as_interrupt() -> None:
    # SIGTERM unwinds like Ctrl-C, so `finally` blocks stop the processes this command started.
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="omstream", prog_name="omstream", message="%(prog)s %(version)s")
def main() -> None:
    """OMStream: user-behaviour analytics over Kafka, Faust and ClickHouse."""


@main.command()
@click.option("--events", "-n", default=200_000, show_default=True, help="events to generate")
@click.option("--data", type=click.Path(path_type=Path), help="replay this Taobao CSV instead of generating")
@click.option("--seed", default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@one_line_errors
def demo(events: int, data: Path | None, seed: int, as_json: bool) -> None:
    """Start the embedded stack, replay data through it, and summarise what ClickHouse stored."""
    from omstream.accept import describe
    from omstream.demo import run_demo
    from omstream.report import render_text
    from omstream.supervisor import claim_state_dir

    _terminate_as_interrupt()
    if data is not None and not data.is_file():
        raise FileNotFoundError(f"no such file: {data}")
    settings = Settings()
    with claim_state_dir(settings.state_dir, "demo", lambda line: click.echo(line, err=True)):
        result = run_demo(settings, events, data, seed)
    emitted = result.emitted
    summary = {"sent": emitted.sent, "rejected": dict(emitted.rejected), **result.report.as_json()}
    if as_json:
        ops = [ops_result.model_dump(mode="json") for ops_result in result.ops]
        click.echo(json.dumps(summary | {"ops": ops}, default=str))
        return
    click.echo(
        f"sent {emitted.sent:,} events; rejected {sum(emitted.rejected.values()):,} "
        f"{dict(emitted.rejected) or ''}; accepted {describe(result.accepted, settings.timezone)}\n"
    )
    click.echo(render_text(result.report))
    click.echo("\nControl plane (signed commands to IDCs bj and sh through their masters)")
    for ops_result in result.ops:
        click.echo(_result_line(ops_result))


@main.command()
@click.option(
    "--window-of",
    "window_file",
    type=click.Path(path_type=Path),
    help="accept the events of this historical file's days instead of recent ones",
)
@one_line_errors
def up(window_file: Path | None) -> None:
    """Run the embedded stack until Ctrl-C: broker, ClickHouse sink (serving read-only queries), stream
    worker and control plane, restarting any service that exits."""
    from omstream.up import run_up, window_of

    _terminate_as_interrupt()
    settings = Settings()
    if window_file is not None:
        settings = window_of(window_file, settings)
    run_up(settings, lambda line: click.echo(line, err=not line.startswith("omstream up:")))


@main.command()
@one_line_errors
def worker() -> None:
    """Run a stream worker: real-time windows of its share of the events topic (KAFKA_BOOTSTRAP)."""
    from omstream.embedded import resolve_bootstrap
    from omstream.services import worker_config
    from stream.app import run_faust
    from stream.worker import build_worker_app

    settings = Settings()
    bootstrap = resolve_bootstrap(settings)
    _serve_metrics(f"worker: Kafka {bootstrap}", settings)
    run_faust(build_worker_app(worker_config(settings, bootstrap)), settings.log_level)


@main.command()
@one_line_errors
def sink() -> None:
    """Run the ClickHouse sink: raw events, dead letters and window results into CLICKHOUSE_DSN."""
    from omstream.embedded import resolve_bootstrap
    from omstream.services import sink_config
    from stream.app import run_faust
    from stream.sink import build_sink_app

    settings = Settings()
    bootstrap = resolve_bootstrap(settings)
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        clickhouse.migrate(client, settings.clickhouse_cluster)
        _serve_metrics(f"sink: Kafka {bootstrap}", settings)
        with _query_server(settings):
            run_faust(build_sink_app(sink_config(settings, bootstrap), client), settings.log_level)
    finally:
        client.close()


@contextlib.contextmanager
def _query_server(settings: Settings) -> Iterator[None]:
    """Read-only ClickHouse HTTP on 127.0.0.1:OMSTREAM_QUERY_PORT, when set, from the sink's chDB."""
    if settings.query_port is None:
        yield
        return
    if settings.clickhouse_dsn:
        raise ValueError("OMSTREAM_QUERY_PORT serves the embedded ClickHouse: leave CLICKHOUSE_DSN empty")
    password = settings.query_password.get_secret_value()
    server = clickhouse.QueryServer(settings.chdb_dir, settings.query_port, password).start()
    click.echo(f"sink: read-only ClickHouse HTTP on {server.host}:{server.port}", err=True)
    try:
        yield
    finally:
        server.stop()  # before the sink's client closes the engine the server reads


@main.command()
@one_line_errors
def control() -> None:
    """Run the control service: signed commands from ops.commands to the masters, outcomes to ops.results."""
    from control.service import serve
    from omstream.embedded import resolve_bootstrap
    from omstream.services import control_config

    settings = Settings()
    config = control_config(settings, resolve_bootstrap(settings))
    _serve_metrics(f"control: Kafka {config.bootstrap}", settings)
    _terminate_as_interrupt()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))


@main.command()
@click.option("--idc", required=True, help="the IDC this master serves")
@click.option("--name", required=True, help="its name, as on its certificate")
@click.option("--port", type=click.IntRange(0, 65535), help="[default: OMSTREAM_MASTER_PORT]")
@one_line_errors
def master(idc: str, name: str, port: int | None) -> None:
    """Run one master: an rpyc server over mutual TLS that executes operations through Salt."""
    from masters.server import build_master, build_server
    from omstream.services import master_config

    settings = Settings()
    config = master_config(settings, idc, name, port)
    server = build_server(build_master(config), config)
    _serve_metrics(f"master {name} ({idc}): rpyc over mTLS on :{server.port}", settings)
    _terminate_as_interrupt()
    with contextlib.suppress(KeyboardInterrupt):
        server.start()


@main.group()
def ops() -> None:
    """Operators: keys, signed commands and their history."""


@ops.command("keygen")
@click.option("--operator", required=True, help="operator name (as in the RBAC policy)")
@click.option("--rotate", is_flag=True, help="replace an existing key (the old one stops verifying)")
@one_line_errors
def ops_keygen(operator: str, rotate: bool) -> None:
    """Create an operator's Ed25519 key and register its public half."""
    from masters.keys import generate_key, load_private_key, public_key_text

    settings = Settings()
    path = generate_key(settings.keys_dir, settings.operators_file, operator, replace=rotate)
    public = public_key_text(load_private_key(settings.keys_dir, operator).public_key())
    click.echo(f"private key {path}; public key {public} registered in {settings.operators_file}")


@ops.command("register")
@click.option("--operator", required=True, help="operator name (as in the RBAC policy)")
@click.option("--public-key", required=True, help="the operator's public key, as `ops keygen` prints it")
@one_line_errors
def ops_register(operator: str, public_key: str) -> None:
    """Register (or replace) an operator's public key, whose private half stays with the operator."""
    from masters.keys import parse_public_key, register

    settings = Settings()
    register(settings.operators_file, operator, parse_public_key(public_key))
    click.echo(f"registered {operator} in {settings.operators_file}")


@ops.command("bootstrap")
@click.option(
    "--identities",
    type=click.Path(file_okay=False, path_type=Path),
    help="also write each service's own key material to DIR/<service> (control, sink, each master)",
)
@one_line_errors
def ops_bootstrap(identities: Path | None) -> None:
    """Create what is missing of the private CA, the certificates and the control service's signing key."""
    from control.pki import Pki, write_identities
    from omstream.embedded import bootstrap_pki, configured_masters

    settings = Settings()
    created = bootstrap_pki(settings)
    click.echo(f"created: {', '.join(created)}" if created else "nothing to create")
    if identities is not None:
        services = write_identities(
            Pki(settings.pki_dir), settings.operators_file, configured_masters(settings), identities
        )
        click.echo(f"identities of {', '.join(services)} in {identities}")


@ops.command("run")
@click.option("--operator", required=True)
@click.option("--idc", "idcs", required=True, help="IDC or comma-separated IDCs")
@click.option("--target", required=True, help="host glob, comma-separated hosts, or G@grain:value")
@click.option("--module", required=True, help="operation module, e.g. ping, disk_usage, service")
@click.option("--arg", "args", multiple=True, help="module argument k=v (v parsed as JSON when it can be)")
@click.option("--wait", is_flag=True, help="print the results as they arrive")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for results")
@click.option("--json", "as_json", is_flag=True, help="one JSON result per line")
@one_line_errors
def ops_run(
    operator: str,
    idcs: str,
    target: str,
    module: str,
    args: tuple[str, ...],
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Sign a command with the operator's key and publish it to ops.commands."""
    from control.client import new_command, parse_args, parse_target, publish, run_and_wait
    from omstream.embedded import resolve_bootstrap
    from omstream.services import control_public_key, ops_topics

    settings = Settings()
    bootstrap = resolve_bootstrap(settings)
    topics = ops_topics(settings)
    command = new_command(
        settings.keys_dir, operator, idcs.split(","), parse_target(target), module, parse_args(args)
    )
    if not wait:
        asyncio.run(publish(bootstrap, topics.commands, [command.model_dump_json().encode()]))
        click.echo(f"published {command.command_id}")
        return

    async def follow() -> bool:
        ok = True
        async for result in run_and_wait(bootstrap, topics, [command], timeout, control_public_key(settings)):
            ok &= result.status in ("accepted", "succeeded")
            click.echo(result.model_dump_json() if as_json else _result_line(result))
        return ok

    if not asyncio.run(follow()):
        sys.exit(1)


def _result_line(result: Any) -> str:
    where = f"{result.idc} via {result.master or '-'}" if result.stage == "result" else "control"
    line = f"{result.command_id} {result.module or '?'} {where}: {result.status}"
    line += f" ({result.reason}: {result.detail})" if result.reason else ""
    for minion, ret in sorted(result.minions.items()):
        line += f"\n  {minion}: {'ok' if ret.ok else 'FAILED'} {json.dumps(ret.output, default=str)[:120]}"
    return line


@ops.command("history")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def ops_history(limit: int, as_json: bool) -> None:
    """Recent commands and their results, from the ClickHouse audit table."""
    from control.client import history
    from omstream.embedded import reader_dsn

    settings = Settings()
    client = clickhouse.connect(reader_dsn(settings))
    try:
        rows = history(client, limit)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    for row in rows:
        where = "FORGED record" if row["stage"] == "forgery" else row["idc"] or "control"
        reason = f" ({row['reason']}: {row['detail']})" if row["reason"] else ""
        click.echo(
            f"{row['time']} {row['command_id']} {row['operator'] or '-'} {row['module'] or '-'} "
            f"{where}: {row['status']}{reason}"
            + (
                f" [{row['minions']} minions via {row['master']}, {row['duration_ms']} ms]"
                if row["minions"]
                else ""
            )
        )


def _serve_metrics(service: str, settings: Settings) -> None:
    from prometheus_client import start_http_server

    server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    click.echo(f"{service}, metrics on {settings.metrics_host}:{server.server_port}", err=True)


@main.command()
@one_line_errors
def migrate() -> None:
    """Apply the ClickHouse migrations (idempotent)."""
    settings = Settings()
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        applied = clickhouse.migrate(client, settings.clickhouse_cluster)
    finally:
        client.close()
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@main.command()
@click.option("--events", "-n", required=True, type=click.IntRange(min=1), help="clean events to write")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--out", "-o", required=True, type=click.Path(path_type=Path), help="CSV file (.gz to compress)"
)
@click.option("--dirty", is_flag=True, help="add dirty rows: duplicates, out-of-window times, garbage")
@one_line_errors
def generate(events: int, seed: int, out: Path, dirty: bool) -> None:
    """Write a deterministic Taobao-shaped UserBehavior CSV."""
    from omstream.progress import generate_with_progress

    started = time.monotonic()
    generate_with_progress(out, events, seed, dirty)
    click.echo(f"wrote {events:,} events to {out} in {time.monotonic() - started:.1f} s")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="events per second")
@click.option("--speedup", type=click.FloatRange(min=0, min_open=True), help="event time sped up X times")
@click.option("--sort", "sort_first", is_flag=True, help="time-order a user-sorted file first (via chDB)")
@click.option("--pack", type=click.IntRange(min=1), help="events per Kafka message [default: settings]")
@click.option(
    "--live",
    is_flag=True,
    help="re-stamp each event to the time it is sent, at the file's pace (x --speedup)",
)
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def replay(
    file: Path,
    rate: float | None,
    speedup: float | None,
    sort_first: bool,
    pack: int | None,
    live: bool,
    as_json: bool,
) -> None:
    """Replay a Taobao UserBehavior CSV (plain or .gz) onto the events topic.

    The events must be in the range the services accept (the `omstream up` running here, or the
    settings), or, with --live, are re-stamped to the present.
    """
    from omstream.accept import check_fits, services_settings
    from omstream.embedded import resolve_bootstrap
    from omstream.progress import replay_with_progress
    from stream.replay import Pacer
    from stream.sources.taobao import file_window

    if not file.is_file():
        raise FileNotFoundError(f"no such file: {file}")
    settings = services_settings(Settings())
    bootstrap = resolve_bootstrap(settings)
    window = file_window(file, settings.timezone)
    if live:
        pacer = Pacer(rate=rate, speedup=speedup or (None if rate else 1.0))
    else:
        pacer = Pacer(rate=rate, speedup=speedup)
        note = check_fits(file, window, settings, embedded=not settings.kafka_bootstrap)
        if note:
            click.echo(note, err=True)
    live_window = window if live else None
    report = asyncio.run(
        replay_with_progress(file, settings, bootstrap, pack, pacer, live_window, time_ordered=sort_first)
    )
    summary = {
        "sent": report.sent,
        "messages": report.messages,
        "rejected": dict(report.rejected),
        "failed": report.failed,
        "errors": report.errors,
    }
    click.echo(json.dumps(summary) if as_json else _replay_summary_text(summary))
    if report.failed:
        sys.exit(1)


def _replay_summary_text(summary: dict[str, Any]) -> str:
    rejected = ", ".join(f"{reason} {count:,}" for reason, count in sorted(summary["rejected"].items()))
    text = (
        f"sent {summary['sent']:,} events in {summary['messages']:,} messages; rejected: {rejected or 'none'}"
    )
    return text + (f"; FAILED {summary['failed']:,}: {summary['errors'][:3]}" if summary["failed"] else "")


@main.command()
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="same as --format json")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("report"),
    show_default=True,
    help="html: folder for report.html and the PNG charts",
)
@click.option(
    "--from", "date_from", type=click.DateTime(["%Y-%m-%d"]), help="first day (default: first with data)"
)
@click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), help="last day (default: last with data)")
@click.option("--arpu", type=click.FloatRange(min=0), help="revenue per active user per day, for LTV")
@click.option("--cac", type=click.FloatRange(min=0), help="cost to acquire a user, for LTV/CAC and payback")
@click.option("--category", type=int, help="show items of this category (default: the best-selling one)")
@one_line_errors
def report(
    fmt: str,
    as_json: bool,
    out: Path,
    date_from: datetime | None,
    date_to: datetime | None,
    arpu: float | None,
    cac: float | None,
    category: int | None,
) -> None:
    """The analyses from ClickHouse: terminal tables, JSON, or an HTML page with charts."""
    from omstream.embedded import reader_dsn
    from omstream.report import ReportOptions, build_report, render_text

    first, last = (day.date() if day else None for day in (date_from, date_to))
    options = ReportOptions(date_from=first, date_to=last, arpu=arpu, cac=cac, category=category)
    settings = Settings()
    client = clickhouse.connect(reader_dsn(settings))
    try:
        result = build_report(client, settings.timezone, settings.funnel_conversion_seconds, options)
    finally:
        client.close()
    if fmt == "html" and not as_json:
        from omstream._html import write_html

        click.echo(f"wrote {write_html(result, out)} and its charts")
    else:
        click.echo(
            json.dumps(result.as_json(), default=str) if as_json or fmt == "json" else render_text(result)
        )


_MOMENTS = ["%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]


@main.command()
@click.option("--json", "as_json", is_flag=True, help="a JSON array of alert objects")
@click.option("--from", "since", type=click.DateTime(_MOMENTS), help="from this time (OMSTREAM_TIMEZONE)")
@click.option("--to", "until", type=click.DateTime(_MOMENTS), help="until this time (exclusive)")
@click.option("--open", "only_open", is_flag=True, help="only alerts still open")
@one_line_errors
def alerts(as_json: bool, since: datetime | None, until: datetime | None, only_open: bool) -> None:
    """Anomaly alerts raised by the real-time detector, newest first."""
    from omstream.alerts import alert_line, list_alerts
    from omstream.embedded import reader_dsn

    settings = Settings()
    client = clickhouse.connect(reader_dsn(settings))
    try:
        rows = list_alerts(client, settings.timezone, since, until, "open" if only_open else "")
    finally:
        client.close()
    click.echo(json.dumps(rows) if as_json else "\n".join(map(alert_line, rows)) or "no alerts")


@main.group()
def bench() -> None:
    """Benchmarks (performance targets live here, not in tests)."""


def _print_figures(result: dict[str, Any], as_json: bool) -> None:
    click.echo(json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))


@bench.command("ingest")
@click.option("--events", "-n", default=1_000_000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def bench_ingest(events: int, as_json: bool) -> None:
    """Generate, produce and sink rates, with peak RSS."""
    from omstream.bench import run_ingest_bench

    result = run_ingest_bench(Settings(), events)
    _print_figures(result, as_json)


@bench.command("stream")
@click.option("--events", "-n", default=1_000_000, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def bench_stream(events: int, as_json: bool) -> None:
    """End-to-end rates: batched beside a plain consumer, one event per message beside Quix Streams."""
    from omstream.bench import run_stream_bench

    _terminate_as_interrupt()
    result = run_stream_bench(Settings(), events)
    _print_figures(result, as_json)


@bench.command("queries")
@click.option("--events", "-n", default=2_000_000, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def bench_queries(events: int, as_json: bool) -> None:
    """The sink's insert rate alone, and while readers query it over its read-only HTTP endpoint."""
    from omstream.bench import run_query_bench

    _terminate_as_interrupt()
    result = run_query_bench(Settings(), events)
    _print_figures(result, as_json)


@bench.command("scale")
@click.option("--events", "-n", default=100_000_000, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def bench_scale(events: int, as_json: bool) -> None:
    """The full pipeline at the data set's scale: generate, replay, windows, ClickHouse, report, check."""
    from omstream._scale_bench import run_scale_bench

    _terminate_as_interrupt()
    result = run_scale_bench(Settings(), events)
    _print_figures(result, as_json)


@bench.command("report")
@click.option("--events", "-n", default=10_000_000, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def bench_report(events: int, as_json: bool) -> None:
    """Time the whole JSON report over generated events in a fresh chDB."""
    from omstream.bench import run_report_bench

    settings = Settings()
    result = run_report_bench(events, settings.timezone, settings.funnel_conversion_seconds)
    _print_figures(result, as_json)


@bench.command("alerts")
@click.option("--events", "-n", default=30_000_000, show_default=True, help="generated events per seed")
@click.option("--seeds", default="1,2,3", show_default=True, help="comma-separated generator seeds")
@click.option(
    "--anomalies", default=12, show_default=True, type=click.IntRange(min=1), help="injected per seed"
)
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def bench_alerts(events: int, seeds: str, anomalies: int, as_json: bool) -> None:
    """Alert quality on generated days with injected anomalies: precision, recall, delay per metric."""
    from omstream._alerts_bench import render_alerts_bench, run_alerts_bench
    from omstream.services import alert_rules

    numbers = [int(seed) for seed in seeds.split(",")]
    progress = functools.partial(click.echo, err=True)
    result = run_alerts_bench(alert_rules(Settings()), events, numbers, anomalies, progress)
    click.echo(json.dumps(result) if as_json else render_alerts_bench(result))


@bench.command("control")
@click.option("--sequential", default=200, show_default=True, type=click.IntRange(min=2))
@click.option("--burst", default=2000, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def bench_control(sequential: int, burst: int, as_json: bool) -> None:
    """Control plane: publish-to-result latency of pings to both IDCs, and sustained commands/s."""
    from omstream._control_bench import run_control_bench

    _terminate_as_interrupt()
    result = run_control_bench(sequential, burst)
    _print_figures(result, as_json)
