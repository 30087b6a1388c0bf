"""Issue 13, tried as an attacker would against the running control plane: one test per row of the
issue's table (rows 8 and 10 also in tests/deploy/test_compose.py and tests/masters), each of which
the control plane failed before.

The tests share one stack and run in file order; the replica test replaces the control service.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from control.client import OpsClient
from control.dispatch import MasterAddress, connect
from control.pki import CONTROL_CLIENT, Pki, issue
from control.results import NIL_ID, CommandResult
from control.signing import SIGNATURE_HEADER, Purpose, signed_headers
from masters.protocol import MasterReply, MasterRequest, decode_batch, encode_batch
from masters.tls import client_context
from omstream.embedded.supervisor import stop_process
from omstream.services import control_public_key, ops_topics
from tests.control.conftest import (
    MASTERS,
    ControlStack,
    by_stage,
    control_stack,
    master_executions,
)

pytestmark = pytest.mark.integration  # every test here starts a broker

REFUSED = (OSError, EOFError)
BIG_GRAIN = "x" * 600_000
SLOW_SECONDS = 6  # the `slow` command; the control service waits OPS_TIMEOUT_S for a result set
OPS_TIMEOUT_S = 3
ALLOWLIST = {"default": {"commands": {"uptime": ["uptime"], "slow": ["sleep", str(SLOW_SECONDS)]}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlStack]:
    root = tmp_path_factory.mktemp("attacks")
    allowlist = root / "allowlist.yaml"
    allowlist.write_text(yaml.safe_dump(ALLOWLIST))
    for name in MASTERS:  # a static grain of 600 KB on every master's (masterless) minion
        grains = root / "state" / "salt" / name / "grains"
        grains.parent.mkdir(parents=True)
        grains.write_text(yaml.safe_dump({"omstream_big": BIG_GRAIN}))
    with control_stack(root, ops_timeout_s=OPS_TIMEOUT_S, command_allowlist_file=allowlist) as running:
        yield running


def master_address(stack: ControlStack, name: str) -> MasterAddress:
    log = (stack.settings.state_dir / f"{name}.log").read_text()
    return MasterAddress(name, "127.0.0.1", int(re.findall(r"rpyc over mTLS on :(\d+)", log)[-1]))


def encoded(*models: BaseModel) -> list[bytes]:
    return [model.model_dump_json().encode() for model in models]


def test_row1_a_certificate_the_ca_signed_for_someone_else_runs_nothing(stack: ControlStack) -> None:
    pki = Pki(stack.settings.pki_dir)
    issue(pki, "mallory", server=True)  # a master's kind of certificate, with clientAuth or not
    issue(pki, "mallory-client", server=False)
    ran = master_executions(stack.settings)
    for name in ("mallory", "mallory-client"):
        with pytest.raises(REFUSED):
            connect(master_address(stack, "bj-1"), client_context(pki.files(name)), 2, 5).root.execute(
                MasterRequest(command=stack.command()).model_dump_json()
            )
    # the control service's own certificate, stolen: the master still checks the command
    stolen = connect(master_address(stack, "bj-1"), client_context(pki.files(CONTROL_CLIENT)), 2, 5)
    try:
        unsigned = stack.command(idc=["bj"]).model_copy(update={"signature": ""})
        widened = stack.command("limited", idc=["bj"], target="web1").model_copy(update={"target": "*"})
        for forged, reason in ((unsigned, "unsigned"), (widened, "bad_signature")):
            batch = encode_batch([MasterRequest(command=forged).model_dump_json()])
            reply = MasterReply.model_validate_json(decode_batch(stolen.root.execute(batch), 1)[0])
            assert (reply.status, reply.reason) == ("refused", reason)
    finally:
        stolen.close()
    assert master_executions(stack.settings) == ran


def test_row2_a_forged_result_never_replaces_the_real_one(stack: ControlStack) -> None:
    real = stack.command(idc=["bj"])
    command_id = str(real.command_id)
    results = stack.run(encoded(real), {command_id: 2})
    assert by_stage(results)[1]["bj"].status == "succeeded"

    fabricated_id = str(uuid.uuid4())
    rewrite = CommandResult(
        command_id=command_id, stage="result", status="failed", idc="bj", master="bj-1", detail="disk on fire"
    )
    fabricated = CommandResult(
        command_id=fabricated_id,
        stage="received",
        status="accepted",
        operator="alice",
        module="service",
        args={"name": "sshd", "action": "restart"},
    )
    future = json.loads(rewrite.model_dump_json()) | {"recorded_at": "2031-01-01T00:00:00Z"}
    asyncio.run(stack.publish(stack.settings.ops_results_topic, [json.dumps(future).encode()]))
    asyncio.run(stack.publish(stack.settings.ops_results_topic, encoded(fabricated)))
    value = rewrite.model_dump_json().encode()
    other_key = signed_headers(Ed25519PrivateKey.generate(), Purpose.RESULT, value)
    asyncio.run(stack.publish(stack.settings.ops_results_topic, [value], headers=other_key))

    history = stack.history()
    mine = sorted(
        (row["stage"], row["status"], row["master"]) for row in history if row["command_id"] == command_id
    )
    real_master = by_stage(results)[1]["bj"].master
    assert mine == [
        ("forgery", "forged", ""),
        ("forgery", "forged", ""),
        ("received", "accepted", ""),
        ("result", "succeeded", real_master),
    ]
    assert [(row["stage"], row["status"]) for row in history if row["command_id"] == fabricated_id] == [
        ("forgery", "forged")
    ]
    assert all(row["time"] < "2030" for row in history)  # the stored time is the sink's, not the record's


def test_row3_an_unsigned_command_reusing_a_real_id_never_replaces_its_admission(stack: ControlStack) -> None:
    real = stack.command(idc=["sh"])
    command_id = str(real.command_id)
    stack.run(encoded(real), {command_id: 2})
    unsigned = real.model_copy(update={"signature": "", "module": "service", "args": {"name": "sshd"}})
    body = json.loads(real.model_dump_json())
    reencoded = json.dumps(body | {"command_id": real.command_id.hex.upper()}).encode()
    results = stack.run([*encoded(unsigned, real), reencoded], {command_id: 2, NIL_ID: 1})
    assert sorted(r.reason for r in results) == ["replayed", "replayed", "unsigned"]
    # the unsigned copy proves no one's identity: its rejection names no command (issue 21)
    assert {r.command_id for r in results if r.reason == "unsigned"} == {NIL_ID}

    rows = [row for row in stack.history() if row["command_id"] == command_id]
    assert sorted((row["stage"], row["status"], row["reason"]) for row in rows) == [
        ("received", "accepted", ""),
        ("received", "rejected", "replayed"),
        ("received", "rejected", "replayed"),
        ("result", "succeeded", ""),
    ]


def test_row5_garbage_on_the_ops_topics_stops_no_consumer(stack: ControlStack) -> None:
    garbage = [b"not json", b"{}", b'{"command_id": "x", "stage": "result"}', b"[" * 100_000 + b"]" * 100_000]
    topics = stack.settings
    everywhere = (topics.ops_results_topic, topics.ops_commands_topic, topics.ops_admitted_topic)
    stop_process(stack.processes["control"])
    for topic in everywhere:  # what a control service starting now must read through
        asyncio.run(stack.publish(topic, garbage))
    stack.start_control("control")
    for topic in everywhere:  # and while it runs
        asyncio.run(stack.publish(topic, garbage))
    ping = stack.command()
    _, per_idc = by_stage(stack.run(encoded(ping), {str(ping.command_id): 3}, timeout=60))
    assert {idc: r.status for idc, r in per_idc.items()} == {"bj": "succeeded", "sh": "succeeded"}

    done = stack.ping_both_while_spraying(topics.ops_results_topic, garbage[:3])
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == [
        "accepted",
        *["succeeded"] * 2,
    ]
    assert all(process.poll() is None for process in stack.processes.values())
    assert stack.history()  # and the sink stored on


def test_row6_a_target_outside_the_role_pattern_is_forbidden(stack: ControlStack) -> None:
    ran = master_executions(stack.settings)
    cases = [stack.command("carol", target="web-**"), stack.command("dave", target="*")]
    results = stack.run(encoded(*cases), {str(case.command_id): 1 for case in cases})
    assert [(r.status, r.reason) for r in results] == [("rejected", "forbidden_target")] * 2
    allowed = stack.command("carol", target=["web-01", "web-02"])  # inside web-??, matches no minion here
    _, per_idc = by_stage(stack.run(encoded(allowed), {str(allowed.command_id): 3}))
    assert {r.detail for r in per_idc.values()} == {"no minion matched the target"}
    assert master_executions(stack.settings) - ran == 2


def test_row7_oversized_and_deeply_nested_input_gets_one_bounded_result(stack: ControlStack) -> None:
    big = stack.command(idc=["bj"], module="grains", args={"keys": ["omstream_big"]})
    _, per_idc = by_stage(stack.run(encoded(big), {str(big.command_id): 2}))
    result = per_idc["bj"]
    assert (result.status, result.truncated) == ("succeeded", True)
    [output] = [ret.output for ret in result.minions.values()]
    assert output["truncated"] is True and output["bytes"] > 600_000  # the marker, with the start:
    assert output["head"].startswith('{"omstream_big": "xxx') and len(output["head"]) < 300_000

    body = json.loads(stack.command().model_dump_json())
    huge = json.dumps(body | {"junk": "x" * 1_200_000}).encode()
    deep, deeper = (
        json.dumps(body | {"args": "NEST"}).replace('"NEST"', "[" * depth + "]" * depth).encode()
        for depth in (30_000, 100_000)
    )
    junk_id = str(uuid.uuid4())
    junk = json.dumps(body | {"command_id": junk_id, "junk": "y" * 60_000}).encode()  # under the size limit
    results = stack.run([huge, deep, deeper, junk], {NIL_ID: 4})
    assert sorted(r.reason for r in results) == ["malformed", "malformed", "too_large", "too_large"]
    assert {(r.command_id, r.operator) for r in results} == {(NIL_ID, "")}  # unproven: no one's

    sources = {r.source for r in results}
    rows = [
        row
        for row in stack.audit_rows(str(big.command_id), body["command_id"], junk_id, NIL_ID)
        if row["command_id"] != uuid.UUID(NIL_ID) or row["source"] in sources
    ]
    assert {row["stage"] for row in rows} == {"received", "result"}
    assert max(len(str(value)) for row in rows for value in row.values()) < 300_000
    assert not any(
        "yyyy" in str(value) or "xxxx" in str(row["args"]) for row in rows for value in row.values()
    )


def executions_of(stack: ControlStack, module: str) -> float:
    total = 0.0
    for name in MASTERS:
        log = (stack.settings.state_dir / f"{name}.log").read_text()
        port = re.findall(r"metrics on [\d.]+:(\d+)", log)[-1]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        total += sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("omstream_master_executions_total{") and f'module="{module}"' in line
        )
    return total


def wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_row9_a_dispatch_that_times_out_is_unknown_not_timeout(stack: ControlStack) -> None:
    before = executions_of(stack, "cmd_allowlisted")
    slow = stack.command(module="cmd_allowlisted", args={"name": "slow"})
    _, per_idc = by_stage(stack.run(encoded(slow), {str(slow.command_id): 3}))
    assert {(r.status, r.reason) for r in per_idc.values()} == {("unknown", "no_reply")}
    wait_for(lambda: executions_of(stack, "cmd_allowlisted") - before == 2, timeout=SLOW_SECONDS + 20)


def accepted(stack: ControlStack, replica: str) -> float:
    log = (stack.settings.state_dir / f"{replica}.log").read_text()
    port = re.findall(r"metrics on [\d.]+:(\d+)", log)[-1]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    line = 'omstream_control_commands_total{reason="",status="accepted"}'
    return sum(float(text.rsplit(" ", 1)[1]) for text in metrics.splitlines() if text.startswith(line))


def group_members(stack: ControlStack) -> tuple[str, int]:
    """The control service's consumer group: its state and how many members it has."""

    async def describe() -> tuple[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_consumer_groups([stack.settings.control_group])
            [group] = response.groups
            return str(group[2]), len(group[5])  # (error, id, state, protocol type, protocol, members)
        finally:
            await admin.close()

    return asyncio.run(describe())


def test_row4_a_replica_taking_over_never_runs_what_the_stopped_one_ran(stack: ControlStack) -> None:
    replicas = ["control", "control-2"]
    stack.start_control("control-2")  # same group: one of the two holds the partition, the other waits
    wait_for(lambda: group_members(stack) == ("Stable", 2), timeout=60)
    admitted_before = {replica: accepted(stack, replica) for replica in replicas}
    slow = stack.command(module="cmd_allowlisted", args={"name": "slow"}, target="*")
    command_id = str(slow.command_id)

    async def until_accepted() -> None:
        async with OpsClient(
            stack.bootstrap, ops_topics(stack.settings), control_public_key(stack.settings)
        ) as client:
            await stack.publish(stack.settings.ops_commands_topic, encoded(slow))
            async with asyncio.timeout(30):
                async for result in client.results():
                    if result.command_id == command_id and result.status == "accepted":
                        break

    asyncio.run(until_accepted())
    [runner] = [replica for replica in replicas if accepted(stack, replica) > admitted_before[replica]]
    [survivor] = [replica for replica in replicas if replica != runner]
    stack.processes[runner].kill()  # mid-dispatch, before it could commit
    stack.processes[runner].wait()
    results = stack.run([], {command_id: 2}, timeout=60)  # the survivor's word on each IDC
    assert {(r.idc, r.status, r.reason) for r in results} == {
        ("bj", "unknown", "interrupted"),
        ("sh", "unknown", "interrupted"),
    }
    # the replay of a command the stopped replica ran, and after a restart of the survivor
    replays = stack.run(encoded(slow), {command_id: 1})
    assert [r.reason for r in replays] == ["replayed"]
    stop_process(stack.processes[survivor])
    stack.start_control("control-3")
    replays = stack.run(encoded(slow), {command_id: 1}, timeout=60)
    assert [r.reason for r in replays] == ["replayed"]
    # the stopped replica may have sent it to an IDC's master or not; no master of an IDC ran it twice,
    # and no second master of an IDC ran it at all
    wait_for(lambda: "started" not in runs_of(stack, command_id).values(), timeout=SLOW_SECONDS + 20)
    ran = runs_of(stack, command_id)
    assert set(ran.values()) <= {"succeeded"}
    idcs = [master.split("-")[0] for master in ran]
    assert len(idcs) == len(set(idcs))


def runs_of(stack: ControlStack, command_id: str) -> dict[str, str]:
    """Master -> the last state of the command in its IDC's ledger (`started`, then its outcome)."""
    runs = {}
    for idc in ("bj", "sh"):
        for line in (stack.settings.state_dir / "idcs" / idc / "claims.log").read_text().splitlines():
            entry = json.loads(line)
            if entry["command_id"] == command_id:
                runs[entry["master"]] = entry["status"]
    return runs


def test_row10_a_master_bounds_unauthenticated_connections_and_serves_metrics_on_loopback(
    stack: ControlStack,
) -> None:
    master = stack.processes["bj-1"]
    address = master_address(stack, "bj-1")

    def threads() -> int:
        status = Path(f"/proc/{master.pid}/status").read_text()
        return int(re.findall(r"Threads:\s+(\d+)", status)[0])

    before = threads()
    idle = [socket.create_connection((address.host, address.port), timeout=5) for _ in range(100)]
    try:
        time.sleep(1)
        assert threads() - before <= 32
    finally:
        for sock in idle:
            sock.close()
    log = (stack.settings.state_dir / "bj-1.log").read_text()
    host, port = re.findall(r"metrics on ([\d.]+):(\d+)", log)[-1]
    assert host == "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: it picks this machine's outward address
        outward = probe.getsockname()[0]
    if not outward.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((outward, int(port)), timeout=2).close()


def test_a_forged_signature_header_is_not_a_signature(stack: ControlStack) -> None:
    fake = CommandResult(command_id=str(uuid.uuid4()), stage="received", status="accepted")
    value = fake.model_dump_json().encode()
    junk = [(SIGNATURE_HEADER, base64.b64encode(b"x" * 64))]
    asyncio.run(stack.publish(stack.settings.ops_results_topic, [value], headers=junk))
    rows = [row for row in stack.history() if row["command_id"] == fake.command_id]
    assert [(row["stage"], row["status"]) for row in rows] == [("forgery", "forged")]
