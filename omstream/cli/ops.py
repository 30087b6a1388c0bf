"""`omstream ops`: operators' keys, certificates, signed commands and their history."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

import clickhouse
from omstream.cli._common import one_line_errors, outcome, pass_settings, plural, result_line
from omstream.settings import Settings


@click.group()
def ops() -> None:
    """Operators: keys, signed commands and their history."""


@ops.command("keygen")
@click.option("--operator", required=True, help="operator name (as in the RBAC policy)")
@click.option("--rotate", is_flag=True, help="replace an existing key (the old one stops verifying)")
@one_line_errors
@pass_settings
def ops_keygen(settings: Settings, operator: str, rotate: bool) -> None:
    """Create an operator's Ed25519 key and register its public half."""
    from masters.keys import generate_key, load_private_key, public_key_text

    path = generate_key(settings.keys_dir, settings.operators_file, operator, replace=rotate)
    public = public_key_text(load_private_key(settings.keys_dir, operator).public_key())
    click.echo(f"private key {path}; public key {public} registered in {settings.operators_file}")
    _reload_running_up(settings)


@ops.command("register")
@click.option("--operator", required=True, help="operator name (as in the RBAC policy)")
@click.option("--public-key", required=True, help="the operator's public key, as `ops keygen` prints it")
@one_line_errors
@pass_settings
def ops_register(settings: Settings, operator: str, public_key: str) -> None:
    """Register (or replace) an operator's public key, whose private half stays with the operator."""
    from masters.keys import parse_public_key, register

    register(settings.operators_file, operator, parse_public_key(public_key))
    click.echo(f"registered {operator} in {settings.operators_file}")
    _reload_running_up(settings)


@ops.command("grant")
@click.option("--operator", required=True, help="operator name (as registered)")
@click.option("--role", "roles", required=True, multiple=True, help="a role of the policy (repeatable)")
@one_line_errors
@pass_settings
def ops_grant(settings: Settings, operator: str, roles: tuple[str, ...]) -> None:
    """Give an operator roles in the RBAC policy file (OMSTREAM_POLICY_FILE, else the embedded stack's)."""
    from control.policy import grant

    policy = settings.policy_file or settings.state_dir / "policy.yaml"
    held = grant(policy, operator, roles)
    click.echo(f"{operator} holds {', '.join(held)} in {policy}")
    _reload_running_up(settings)


def _reload_running_up(settings: Settings) -> None:
    """The control plane reads operators and the policy at start: a running `omstream up` restarts it."""
    from omstream.embedded.running import reload_up

    pid = reload_up(settings.state_dir)
    if pid is not None:
        click.echo(f"the omstream up running here (pid {pid}) restarted its control plane to read it")


@ops.command("bootstrap")
@click.option(
    "--identities",
    type=click.Path(file_okay=False, path_type=Path),
    help="also write each service's own key material to DIR/<service> (control, sink, each master)",
)
@one_line_errors
@pass_settings
def ops_bootstrap(settings: Settings, identities: Path | None) -> None:
    """Create what is missing of the private CA, the certificates and the control service's signing key."""
    from control.pki import Pki, write_identities
    from omstream.embedded.control_plane import bootstrap_pki, configured_masters

    created = bootstrap_pki(settings)
    click.echo(f"created: {', '.join(created)}" if created else "nothing to create")
    if identities is not None:
        services = write_identities(
            Pki(settings.pki_dir), settings.operators_file, configured_masters(settings), identities
        )
        click.echo(f"identities of {', '.join(services)} in {identities}")


@ops.command("run")
@click.option("--operator", required=True, help="who signs (their key in <state>/keys)")
@click.option("--idc", "idcs", required=True, help="IDC or comma-separated IDCs")
@click.option("--target", required=True, help="host glob, comma-separated hosts, or G@grain:value")
@click.option("--module", required=True, help="operation module, e.g. ping, disk_usage, service")
@click.option("--arg", "args", multiple=True, help="module argument k=v (v parsed as JSON when it can be)")
@click.option("--wait", is_flag=True, help="print the results as they arrive")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for results")
@click.option("--json", "as_json", is_flag=True, help="one JSON result per line")
@one_line_errors
@pass_settings
def ops_run(
    settings: Settings,
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
    from masters.keys import load_private_key
    from omstream.embedded.running import resolve_bootstrap
    from omstream.services import control_public_key, ops_topics

    bootstrap = resolve_bootstrap(settings)
    topics = ops_topics(settings)
    command = new_command(
        load_private_key(settings.keys_dir, operator),
        operator,
        idcs.split(","),
        parse_target(target),
        module,
        parse_args(args),
    )
    if not wait:
        asyncio.run(publish(bootstrap, topics.commands, [command]))
        click.echo(f"published {command.command_id}")
        return

    async def follow() -> bool:
        ok = True
        key = control_public_key(settings)
        async for _, result in run_and_wait(bootstrap, topics, [command], timeout, key):
            ok &= result.status in ("accepted", "succeeded")
            click.echo(result.model_dump_json() if as_json else result_line(result))
        return ok

    if not asyncio.run(follow()):
        sys.exit(1)


@ops.command("history")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="records to show")
@click.option("--json", "as_json", is_flag=True, help="print the records as one JSON array")
@one_line_errors
@pass_settings
def ops_history(settings: Settings, limit: int, as_json: bool) -> None:
    """Recent commands and their results, from the ClickHouse audit table."""
    from control.client import history
    from omstream.embedded.running import reader_dsn

    client = clickhouse.connect(reader_dsn(settings))
    try:
        rows = history(client, limit, settings.timezone)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    if not rows:
        click.echo("no commands yet")
        return
    click.echo(f"time ({settings.timezone}), command, operator, module, where: outcome")
    for row in rows:
        click.echo(_history_line(row))


def _history_line(row: dict[str, Any]) -> str:
    where = "FORGED record" if row["stage"] == "forgery" else row["idc"] or "control"
    line = f"{row['time']} {row['command_id']} {row['operator'] or '-'} {row['module'] or '-'} {where}: "
    line += outcome(row["status"], row["reason"], row["detail"])
    if row["minions"]:
        line += f" [{plural(row['minions'], 'minion')} via {row['master']}, {row['duration_ms']} ms]"
    return line
