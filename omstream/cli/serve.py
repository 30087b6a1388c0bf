"""Long-running services of a deployment: the sink, a stream worker, the control service, a master; and the
schema."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import click

import clickhouse
from omstream.cli._common import (
    configure_logging,
    one_line_errors,
    pass_settings,
    serve_metrics,
    terminate_as_interrupt,
)
from omstream.settings import Settings, SettingsConflict


@click.command()
@one_line_errors
@pass_settings
def worker(settings: Settings) -> None:
    """Run a stream worker: real-time windows of its share of the events topic (KAFKA_BOOTSTRAP)."""
    from omstream.embedded.running import resolve_bootstrap
    from omstream.services import worker_config
    from stream.app import run_faust
    from stream.worker import build_worker_app

    bootstrap = resolve_bootstrap(settings)
    serve_metrics(f"worker: Kafka {bootstrap}", settings)
    run_faust(build_worker_app(worker_config(settings, bootstrap)), settings.log_level)


@click.command()
@one_line_errors
@pass_settings
def sink(settings: Settings) -> None:
    """Run the ClickHouse sink: raw events, dead letters and window results into CLICKHOUSE_DSN."""
    from omstream.embedded.running import resolve_bootstrap
    from omstream.services import sink_config
    from stream.app import run_faust
    from stream.sink import build_sink_app

    bootstrap = resolve_bootstrap(settings)
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        clickhouse.migrate(client, settings.clickhouse_cluster)
        serve_metrics(f"sink: Kafka {bootstrap}", settings)
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
        raise SettingsConflict(
            "OMSTREAM_QUERY_PORT serves the embedded ClickHouse: leave CLICKHOUSE_DSN empty"
        )
    password = settings.query_password.get_secret_value()
    server = clickhouse.QueryServer(settings.chdb_dir, settings.query_port, password).start()
    click.echo(f"sink: read-only ClickHouse HTTP on {server.host}:{server.port}", err=True)
    try:
        yield
    finally:
        server.stop()  # before the sink's client closes the engine the server reads


@click.command()
@one_line_errors
@pass_settings
def control(settings: Settings) -> None:
    """Run the control service: signed commands from ops.commands to the masters, outcomes to ops.results."""
    from control.service import serve
    from omstream.embedded.running import resolve_bootstrap
    from omstream.services import control_config

    configure_logging(settings.log_level)
    config = control_config(settings, resolve_bootstrap(settings))
    serve_metrics(f"control: Kafka {config.bootstrap}", settings)
    terminate_as_interrupt()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))


@click.command()
@click.option("--idc", required=True, help="the IDC this master serves")
@click.option("--name", required=True, help="its name, as on its certificate")
@click.option("--port", type=click.IntRange(0, 65535), help="[default: OMSTREAM_MASTER_PORT]")
@one_line_errors
@pass_settings
def master(settings: Settings, idc: str, name: str, port: int | None) -> None:
    """Run one master: an rpyc server over mutual TLS that executes operations through Salt."""
    from masters.server import build_master, build_server
    from omstream.services import master_config

    configure_logging(settings.log_level)
    config = master_config(settings, idc, name, port)
    server = build_server(build_master(config), config)
    serve_metrics(f"master {name} ({idc}): rpyc over mTLS on :{server.port}", settings)
    terminate_as_interrupt()
    with contextlib.suppress(KeyboardInterrupt):
        server.start()


@click.command()
@one_line_errors
@pass_settings
def migrate(settings: Settings) -> None:
    """Apply the ClickHouse migrations (idempotent)."""
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        applied = clickhouse.migrate(client, settings.clickhouse_cluster)
    finally:
        client.close()
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@click.command()
@one_line_errors
@pass_settings
def retention(settings: Settings) -> None:
    """Release the embedded broker's record batches that every reader is past (OMSTREAM_STORE_URL)."""
    from omstream.embedded.retention import ObjectStore, Plan, run_retention
    from omstream.embedded.running import resolve_bootstrap
    from omstream.embedded.stack import topic_partitions

    configure_logging(settings.log_level)
    if not settings.store_url:
        raise click.UsageError("retention serves the store of `omstream up`: OMSTREAM_STORE_URL is not set")
    bootstrap = resolve_bootstrap(settings)
    serve_metrics(f"retention: Kafka {bootstrap}, store {settings.store_url}", settings)
    plan = Plan.of(settings, topic_partitions(settings))
    store = ObjectStore(settings.store_url, settings.store_master_url)
    asyncio.run(run_retention(bootstrap, store, plan, settings.broker_release_s, settings.retention_every_s))
