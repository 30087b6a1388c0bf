"""`omstream demo`: the whole pipeline and the control plane on one machine, with events replayed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import clickhouse
from control.client import new_command, run_and_wait
from control.results import CommandResult
from masters.keys import load_private_key
from masters.protocol import Command
from omstream.embedded.control_plane import DEMO_OPERATOR, control_plane
from omstream.embedded.progress import generate_with_progress, replay_with_progress
from omstream.embedded.stack import broker, pipeline, state_path, wait_until_processed
from omstream.services import control_public_key, ops_topics
from omstream.settings import Settings
from report import Report, build_report
from stream.emitter import EmitReport
from stream.events import AcceptRange
from stream.sources.taobao import file_window

_CONSUME_TIMEOUT_S = 900.0
_OPS_TIMEOUT_S = 60.0


class NotDelivered(RuntimeError):
    """Kafka did not take every event of a replay."""


@dataclass
class DemoResult:
    emitted: EmitReport
    report: Report
    ops: list[CommandResult]
    accepted: AcceptRange


def demo_commands(settings: Settings) -> list[Command]:
    """A few operations across both embedded IDCs, and one unsigned command the control service refuses."""
    key = load_private_key(settings.keys_dir, DEMO_OPERATOR)
    commands = [
        new_command(key, DEMO_OPERATOR, ["bj", "sh"], "*", "ping", {}),
        new_command(key, DEMO_OPERATOR, ["bj"], "*", "disk_usage", {}),
        new_command(key, DEMO_OPERATOR, ["sh"], "*", "cmd_allowlisted", {"name": "uptime"}),
        new_command(key, DEMO_OPERATOR, ["bj", "sh"], "*", "state_apply", {"state": "omstream_probe"}),
    ]
    unsigned = new_command(key, DEMO_OPERATOR, ["bj"], "*", "grains", {}).model_copy(update={"signature": ""})
    return [*commands, unsigned]


async def run_commands(settings: Settings, bootstrap: str, commands: list[Command]) -> list[CommandResult]:
    """Each command's results, in the order the commands were given: admission first, then per IDC."""
    topics = ops_topics(settings)
    key = control_public_key(settings)
    results = [pair async for pair in run_and_wait(bootstrap, topics, commands, _OPS_TIMEOUT_S, key)]
    order = {str(command.command_id): position for position, command in enumerate(commands)}
    results.sort(key=lambda pair: (order[str(pair[0].command_id)], pair[1].stage != "received", pair[1].idc))
    return [result for _, result in results]


def produced_targets(settings: Settings, emitted: EmitReport) -> dict[tuple[str, int], int]:
    """The last offset written per (topic, partition): what the worker must have committed past."""
    targets = {
        (settings.events_topic, partition): offset for partition, offset in emitted.last_offsets.items()
    }
    targets.update({(settings.dlq_topic, p): offset for p, offset in emitted.dead_letter_offsets.items()})
    return targets


def run_demo(settings: Settings, events: int, data: Path | None, seed: int) -> DemoResult:
    """The stack accepts the data's own window (unless the settings fix a range): the generator's data, like
    the real Taobao file, is from 2017."""
    source = data or state_path(settings, "demo-events.csv")
    if data is None:
        generate_with_progress(source, events, seed, dirty=True)
    if settings.accept_from is None:
        settings = settings.with_window(file_window(source, settings.timezone))
    with (
        broker(settings) as bootstrap,
        pipeline(settings, bootstrap) as services,
        control_plane(settings, bootstrap) as plane,
    ):
        # the generator's output, like the Taobao file, is sorted by user: replay it in event time
        emitted = asyncio.run(replay_with_progress(source, settings, bootstrap, time_ordered=True))
        if emitted.failed:
            raise NotDelivered(f"{emitted.failed} events were not delivered: {emitted.errors[:3]}")
        ops = asyncio.run(run_commands(settings, bootstrap, demo_commands(settings)))
        targets = produced_targets(settings, emitted)
        wait_until_processed(settings, bootstrap, targets, _CONSUME_TIMEOUT_S, alive=[*services, *plane])
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        report = build_report(client, settings.timezone, settings.funnel_conversion_seconds)
        return DemoResult(emitted, report, ops, settings.accept_range)
    finally:
        client.close()
