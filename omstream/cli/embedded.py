"""The embedded stack: `omstream up` until Ctrl-C, and `omstream demo` once."""

from __future__ import annotations

import json
from pathlib import Path

import click

from omstream.cli._common import one_line_errors, pass_settings, result_line, terminate_as_interrupt
from omstream.settings import Settings
from stream.sources.taobao import UnreadableFile


@click.command()
@click.option("--events", "-n", default=200_000, show_default=True, help="events to generate")
@click.option("--data", type=click.Path(path_type=Path), help="replay this Taobao CSV instead of generating")
@click.option("--seed", default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@one_line_errors
@pass_settings
def demo(settings: Settings, events: int, data: Path | None, seed: int, as_json: bool) -> None:
    """Start the embedded stack, replay data through it, and summarise what ClickHouse stored."""
    from omstream.embedded.accept import describe
    from omstream.embedded.demo import run_demo
    from omstream.embedded.supervisor import claim_state_dir
    from report import render_text

    terminate_as_interrupt()
    if data is not None and not data.is_file():
        raise UnreadableFile(f"no such file: {data}")
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
        click.echo(result_line(ops_result))


@click.command()
@click.option(
    "--window-of",
    "window_file",
    type=click.Path(path_type=Path),
    help="accept the events of this historical file's days instead of recent ones",
)
@one_line_errors
@pass_settings
def up(settings: Settings, window_file: Path | None) -> None:
    """Run the embedded stack until Ctrl-C: broker, ClickHouse sink (serving read-only queries), stream
    worker and control plane, restarting any service that exits."""
    from omstream.embedded.up import run_up, window_of

    terminate_as_interrupt()
    if window_file is not None:
        settings = window_of(window_file, settings)
    run_up(settings, lambda line: click.echo(line, err=not line.startswith("omstream up:")))
