"""`omstream report`: the analyses from ClickHouse as terminal tables, JSON or an HTML page."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

import clickhouse
from omstream.cli._common import one_line_errors, pass_settings
from omstream.settings import Settings


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
    help="terminal tables, one JSON object, or an HTML page with charts",
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
@pass_settings
def report(
    settings: Settings,
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
    from omstream.embedded.running import reader_dsn
    from report import ReportOptions, build_report, render_text

    first, last = (day.date() if day else None for day in (date_from, date_to))
    options = ReportOptions(date_from=first, date_to=last, arpu=arpu, cac=cac, category=category)
    client = clickhouse.connect(reader_dsn(settings))
    try:
        result = build_report(client, settings.timezone, settings.funnel_conversion_seconds, options)
    finally:
        client.close()
    if fmt == "html" and not as_json:
        from report import write_html

        click.echo(f"wrote {write_html(result, out)} and its charts")
    else:
        click.echo(
            json.dumps(result.as_json(), default=str) if as_json or fmt == "json" else render_text(result)
        )


_MOMENTS = ["%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="a JSON array of alert objects")
@click.option("--from", "since", type=click.DateTime(_MOMENTS), help="from this time (OMSTREAM_TIMEZONE)")
@click.option("--to", "until", type=click.DateTime(_MOMENTS), help="until this time (exclusive)")
@click.option("--open", "only_open", is_flag=True, help="only alerts still open")
@one_line_errors
@pass_settings
def alerts(
    settings: Settings, as_json: bool, since: datetime | None, until: datetime | None, only_open: bool
) -> None:
    """Anomaly alerts raised by the real-time detector, newest first."""
    from omstream.embedded.running import reader_dsn
    from report import alert_line, list_alerts

    client = clickhouse.connect(reader_dsn(settings))
    try:
        rows = list_alerts(client, settings.timezone, since, until, "open" if only_open else "")
    finally:
        client.close()
    click.echo(json.dumps(rows) if as_json else "\n".join(map(alert_line, rows)) or "no alerts")
