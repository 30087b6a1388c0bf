"""The control plane end to end: real Kafka (Tansu), control service, four masters (rpyc over mutual TLS,
masterless Salt), the sink writing the audit table into chDB.

The tests of this module share one stack and run in file order: the failover test stops masters.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator

import pytest

import clickhouse
from control.results import NIL_ID, CommandResult
from omstream.embedded.stack import wait_until_processed
from omstream.embedded.supervisor import stop_process
from tests.control.conftest import PING_BOTH_IDCS, ControlStack, by_stage, control_stack, master_executions

pytestmark = pytest.mark.integration  # every test here starts a broker


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlStack]:
    with control_stack(tmp_path_factory.mktemp("control"), ops_timeout_s=8) as running:
        yield running


def test_a_signed_ping_from_the_cli_returns_success_from_both_idcs(stack: ControlStack) -> None:
    done = stack.cli(*PING_BOTH_IDCS)
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
    unproven = {"unsigned", "bad_signature"}  # their rejections name no command (issue 21)
    proven = {reason: c for reason, c in cases.items() if reason not in unproven}
    expected = {str(c.command_id): 1 for c in proven.values()} | {str(replayed.command_id): 4, NIL_ID: 2}
    results = stack.run(payloads, expected)

    reasons = {r.command_id: r.reason for r in results if r.status == "rejected"}
    assert {reasons[str(c.command_id)] for c in proven.values()} == set(proven)
    assert {r.reason for r in results if r.command_id == NIL_ID} == unproven
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
    expected = {
        NIL_ID: 2,
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
    history = stack.cli("ops", "history", "--json")
    assert history.returncode == 0, history.stderr
    assert any(row["command_id"] == str(ping.command_id) for row in json.loads(history.stdout))
