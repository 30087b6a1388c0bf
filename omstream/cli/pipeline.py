"""Data into the pipeline: generate a Taobao-shaped CSV, replay one onto the events topic."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from omstream.cli._common import one_line_errors, pass_settings
from omstream.settings import Settings
from stream.sources.taobao import UnreadableFile


@click.command()
@click.option("--events", "-n", required=True, type=click.IntRange(min=1), help="clean events to write")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--out", "-o", required=True, type=click.Path(path_type=Path), help="CSV file (.gz to compress)"
)
@click.option("--dirty", is_flag=True, help="add dirty rows: duplicates, out-of-window times, garbage")
@one_line_errors
def generate(events: int, seed: int, out: Path, dirty: bool) -> None:
    """Write a deterministic Taobao-shaped UserBehavior CSV."""
    from omstream.embedded.progress import generate_with_progress

    started = time.monotonic()
    generate_with_progress(out, events, seed, dirty)
    click.echo(f"wrote {events:,} events to {out} in {time.monotonic() - started:.1f} s")


@click.command()
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
@pass_settings
def replay(
    settings: Settings,
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
    from omstream.embedded.accept import check_fits, services_settings
    from omstream.embedded.progress import replay_with_progress
    from omstream.embedded.running import resolve_bootstrap
    from stream.replay import Pacer
    from stream.sources.taobao import file_window

    if not file.is_file():
        raise UnreadableFile(f"no such file: {file}")
    settings = services_settings(settings)
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
