"""The control plane end to end: real Kafka (Tansu), control service, four masters (rpyc over mutual TLS,
masterless Salt), the sink writing the audit table into chDB.

The tests of this module share one stack and run in file order: the failover test stops masters.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import clickhouse
from control.client import OpsClient, new_command, publish
from control.results import CommandResult
from masters.keys import generate_key, load_private_key, sign
from masters.protocol import Command
from omstream.embedded import (
    control_plane,
    service_env,
    service_process,
    stop_process,
    tansu_broker,
    topic_partitions,
    wait_until_processed,
)
from omstream.services import ops_topics
from omstream.settings import Settings
from stream.kafka import ensure_topics

POLICY = """
roles:
  admin: {modules: ["*"], idcs: ["*"], targets: ["*"]}
  web_pinger: {modules: [ping], idcs: [bj], targets: ["web*"]}
operators:
  demo: [admin]
  limited: [web_pinger]
"""


PING_BOTH_IDCS = "ops run --operator demo --idc bj,sh --target * --module ping --wait --json"


@dataclass
class ControlStack:
    settings: Settings
    bootstrap: str
    processes: dict[str, subprocess.Popen[bytes]]

    def run(
        self, payloads: list[bytes], expected: dict[str, int], timeout: float = 30
    ) -> list[CommandResult]:
        """Publish raw commands; collect results until each command id has its expected count."""

        async def follow() -> list[CommandResult]:
            results: list[CommandResult] = []
            async with OpsClient(self.bootstrap, ops_topics(self.settings)) as follower:
                await publish(self.bootstrap, self.settings.ops_commands_topic, payloads)
                async with asyncio.timeout(timeout):
                    async for result in follower.results():
                        if result.command_id in expected:
                            results.append(result)
                        counts = {cid: sum(r.command_id == cid for r in results) for cid in expected}
                        if counts == expected:
                            return results
            return results

        return asyncio.run(follow())

    def command(self, operator: str = "demo", **fields: object) -> Command:
        base = new_command(self.settings.keys_dir, operator, ["bj", "sh"], "*", "ping", {})
        return sign(base.model_copy(update=fields), load_private_key(self.settings.keys_dir, operator))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlStack]:
    state = tmp_path_factory.mktemp("control")
    policy = state / "policy.yaml"
    policy.write_text(POLICY)
    settings = Settings(
        state_dir=state / "state", kafka_bootstrap="", clickhouse_dsn="", policy_file=policy, ops_timeout_s=8
    )
    generate_key(settings.keys_dir, settings.operators_file, "limited")
    with contextlib.ExitStack() as exits:
        bootstrap = exits.enter_context(tansu_broker(settings.state_dir))
        asyncio.run(ensure_topics(bootstrap, topic_partitions(settings)))
        sink = exits.enter_context(service_process(settings, bootstrap, "sink", "sink"))
        plane = exits.enter_context(control_plane(settings, bootstrap))
        names = ["bj-1", "bj-2", "sh-1", "sh-2", "control"]
        yield ControlStack(settings, bootstrap, {"sink": sink, **dict(zip(names, plane, strict=True))})


def master_executions(settings: Settings) -> float:
    """Operations the masters ran, from their Prometheus endpoints (ports from their logs)."""
    total = 0.0
    for name in ("bj-1", "bj-2", "sh-1", "sh-2"):
        log = (settings.state_dir / f"{name}.log").read_text()
        port = re.search(r"metrics on :(\d+)", log)
        if port is None:  # a stopped master ran nothing more
            continue
        try:
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=2).read()
        except OSError:
            continue
        for line in metrics.decode().splitlines():
            if line.startswith("omstream_master_executions_total{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def by_stage(results: list[CommandResult]) -> tuple[list[CommandResult], dict[str, CommandResult]]:
    received = [r for r in results if r.stage == "received"]
    return received, {r.idc: r for r in results if r.stage == "result"}


def test_a_signed_ping_from_the_cli_returns_success_from_both_idcs(stack: ControlStack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "omstream", *PING_BOTH_IDCS.split()],
        env=service_env(stack.settings, stack.bootstrap),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    received, per_idc = by_stage(
        [CommandResult.model_validate_json(line) for line in done.stdout.splitlines()]
    )
    assert [r.status for r in received] == ["accepted"]
    assert sorted(per_idc) == ["bj", "sh"]
    for idc, result in per_idc.items():
        assert result.status == "succeeded" and result.master.startswith(f"{idc}-")
        assert [ret.ok for ret in result.minions.values()] == [True]


def test_forged_expired_replayed_and_forbidden_commands_never_reach_a_master(stack: ControlStack) -> None:
    ran_before = master_executions(stack.settings)
    now = datetime.datetime.now(datetime.UTC)
    replayed = stack.command()
    forged = stack.command().model_copy(update={"target": "db*"})  # changed after signing
    cases = {
        "unsigned": stack.command().model_copy(update={"signature": ""}),
        "bad_signature": forged,
        "expired": stack.command(issued_at=now - datetime.timedelta(minutes=10), expires_at=now),
        "forbidden_module": stack.command("limited", module="disk_usage", idc=["bj"], target="web1"),
        "forbidden_idc": stack.command("limited", idc=["bj", "sh"], target="web1"),
        "forbidden_target": stack.command("limited", idc=["bj"], target="db1"),
    }
    payloads = [replayed.model_dump_json().encode()] * 2 + [
        c.model_dump_json().encode() for c in cases.values()
    ]
    expected = {str(c.command_id): 1 for c in cases.values()} | {str(replayed.command_id): 4}
    results = stack.run(payloads, expected)

    reasons = {r.command_id: r.reason for r in results if r.status == "rejected"}
    assert {reasons[str(c.command_id)] for c in cases.values()} == set(cases)
    assert reasons[str(replayed.command_id)] == "replayed"
    assert all(r.stage == "received" for r in results if r.command_id != str(replayed.command_id))
    assert master_executions(stack.settings) - ran_before == 2  # the first copy of `replayed`, in bj and sh


def test_bad_input_is_rejected_with_a_reason_and_the_service_keeps_running(stack: ControlStack) -> None:
    unknown_module = stack.command(module="reboot")
    bad_args = stack.command(module="service", args={"name": "nginx; rm -rf /"})
    after = stack.command()
    payloads = [
        b"{not json",
        b'{"command_id": "123"}',
        *(c.model_dump_json().encode() for c in (unknown_module, bad_args, after)),
    ]
    nil = "00000000-0000-0000-0000-000000000000"
    expected = {
        nil: 2,
        str(unknown_module.command_id): 1,
        str(bad_args.command_id): 1,
        str(after.command_id): 3,
    }
    results = stack.run(payloads, expected)
    reasons = sorted(r.reason for r in results if r.status == "rejected")
    assert reasons == ["bad_args", "malformed", "malformed", "unknown_module"]
    assert stack.processes["control"].poll() is None
    _, per_idc = by_stage([r for r in results if r.command_id == str(after.command_id)])
    assert {idc: r.status for idc, r in per_idc.items()} == {"bj": "succeeded", "sh": "succeeded"}


def test_failover_to_the_other_master_and_a_clear_failure_when_both_are_down(stack: ControlStack) -> None:
    stop_process(stack.processes["bj-1"])
    pings = [stack.command(idc=["bj"]) for _ in range(3)]
    results = stack.run([p.model_dump_json().encode() for p in pings], {str(p.command_id): 2 for p in pings})
    assert {(r.status, r.master) for r in results if r.stage == "result"} == {("succeeded", "bj-2")}

    stop_process(stack.processes["bj-2"])
    started = time.monotonic()
    down = stack.command()
    _, per_idc = by_stage(stack.run([down.model_dump_json().encode()], {str(down.command_id): 3}))
    assert (per_idc["bj"].status, per_idc["bj"].reason) == ("failed", "unreachable")
    assert "no master of bj reachable" in per_idc["bj"].detail
    assert per_idc["sh"].status == "succeeded"
    assert time.monotonic() - started < stack.settings.ops_timeout_s


def test_the_audit_table_holds_commands_and_their_results(stack: ControlStack) -> None:
    ping = stack.command(idc=["sh"])
    stack.run([ping.model_dump_json().encode()], {str(ping.command_id): 2})
    wait_until_processed(stack.settings, stack.bootstrap, {}, timeout=60, alive=[stack.processes["sink"]])
    stop_process(stack.processes["sink"])
    client = clickhouse.connect(stack.settings.resolved_clickhouse_dsn)
    try:
        rows = clickhouse.query_rows(client, "ops_history", limit=1000)
    finally:
        client.close()
    mine = {(row["stage"], row["idc"]): row for row in rows if row["command_id"] == str(ping.command_id)}
    assert mine[("received", "")]["status"] == "accepted" and mine[("received", "")]["operator"] == "demo"
    assert mine[("result", "sh")]["status"] == "succeeded" and mine[("result", "sh")]["minions"] == 1
    assert mine[("result", "sh")]["master"] in ("sh-1", "sh-2")
    reasons = {row["reason"] for row in rows if row["status"] == "rejected"}
    assert {"unsigned", "bad_signature", "expired", "replayed", "forbidden_module", "malformed"} <= reasons
    history = subprocess.run(
        [sys.executable, "-m", "omstream", "ops", "history", "--json"],
        env=service_env(stack.settings, stack.bootstrap),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert history.returncode == 0, history.stderr
    assert any(row["command_id"] == str(ping.command_id) for row in json.loads(history.stdout))
