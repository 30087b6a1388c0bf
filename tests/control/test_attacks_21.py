"""Issue 21, tried as the attacker did against the running control plane: one test per row of the
issue's list (row 6, the deployment, is in tests/deploy/test_compose.py; the 1,000-level and
7,000-minion outputs of row 4 in tests/masters/test_outputs.py), each of which failed before.

The stack has two partitions of `ops.commands`, and a grain nested 250 and 400 levels deep on every
master's (masterless) minion. The tests share it and run in file order.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from control.client import OpsClient
from control.results import NIL_ID, CommandResult
from control.signing import SIGNATURE_HEADER
from omstream.embedded.stack import service_process
from omstream.embedded.supervisor import stop_process
from omstream.services import control_public_key, ops_topics
from stream.kafka import TOPIC_CONFIGS
from tests.control.conftest import MASTERS, ControlStack, by_stage, control_stack
from tests.control.test_attacks import encoded, group_members, master_address, wait_for
from tests.masters.test_outputs import depth_of

pytestmark = pytest.mark.integration  # every test here starts a broker

DEPTHS = (250, 400)  # Salt's grains loader reads no deeper


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlStack]:
    root = tmp_path_factory.mktemp("attacks21")
    grains_text = "".join(f"omstream_deep_{depth}: {'[' * depth}{']' * depth}\n" for depth in DEPTHS)
    for name in MASTERS:
        grains = root / "state" / "salt" / name / "grains"
        grains.parent.mkdir(parents=True)
        grains.write_text(grains_text)
    partitions = {"ops.commands": 2}
    with control_stack(root, partitions=partitions, ops_timeout_s=8) as running:
        yield running


def ledger(stack: ControlStack, command_id: str) -> dict[str, list[tuple[str, str]]]:
    """IDC -> each line of its ledger about the command: (master, status)."""
    lines: dict[str, list[tuple[str, str]]] = {}
    for idc in ("bj", "sh"):
        path = stack.settings.state_dir / "idcs" / idc / "claims.log"
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["command_id"] == command_id:
                lines.setdefault(idc, []).append((entry["master"], entry["status"]))
    return lines


def starts(stack: ControlStack, command_id: str) -> dict[str, list[str]]:
    """IDC -> the masters that started the command there (each line names the master that claimed it;
    a restarted master rewrites the ledger with the latest line of each command)."""
    return {idc: sorted({master for master, _ in lines}) for idc, lines in ledger(stack, command_id).items()}


def test_row1_the_same_command_on_both_partitions_with_two_replicas_is_admitted_once(
    stack: ControlStack,
) -> None:
    """It was admitted by both replicas (each on its own partition) and ran on both masters of an IDC."""
    stack.start_control("control-2")
    wait_for(lambda: group_members(stack) == ("Stable", 2), timeout=60)
    ping = stack.command(module="cmd_allowlisted", args={"name": "hostname"})
    command_id = str(ping.command_id)

    async def on_both_partitions() -> list[CommandResult]:
        key = control_public_key(stack.settings)
        results = []
        async with OpsClient(stack.bootstrap, ops_topics(stack.settings), key) as follower:
            topic = stack.settings.ops_commands_topic
            await asyncio.gather(*(stack.publish(topic, encoded(ping), partition=p) for p in (0, 1)))
            async with asyncio.timeout(30):
                async for result in follower.results():
                    results.append(result) if result.command_id == command_id else None
                    if len(results) == 4:  # a rejection, an acceptance and a result per IDC
                        return results
        return results

    results = asyncio.run(on_both_partitions())
    received, per_idc = by_stage(results)
    assert sorted((r.status, r.reason) for r in received) == [
        ("accepted", ""),
        ("rejected", "wrong_partition"),
    ]
    assert {idc: r.status for idc, r in per_idc.items()} == {"bj": "succeeded", "sh": "succeeded"}
    assert {idc: len(masters) for idc, masters in starts(stack, command_id).items()} == {"bj": 1, "sh": 1}
    stop_process(stack.processes.pop("control-2"))


def start_master(stack: ControlStack, name: str, port: int) -> None:
    idc = name.split("-")[0]
    options = ("--idc", idc, "--name", name, "--port", str(port))
    stack.processes[name] = stack.exits.enter_context(
        service_process(stack.settings, stack.bootstrap, "master", name, *options)
    )
    wait_for(lambda: _listening(port), timeout=60)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def erase_topic(stack: ControlStack, topic: str) -> None:
    async def recreate() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
            for _ in range(50):
                if topic not in await admin.list_topics():
                    break
                await asyncio.sleep(0.1)
            await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=TOPIC_CONFIGS)])
        finally:
            await admin.close()

    asyncio.run(recreate())


def committed(stack: ControlStack, source: str) -> bool:
    """Whether the control service committed past the record at `source` (topic/partition/offset)."""
    topic, partition, offset = source.rsplit("/", 2)

    async def position() -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=stack.settings.control_group)
        await consumer.start()
        try:
            return await consumer.committed(TopicPartition(topic, int(partition)))
        finally:
            await consumer.stop()

    return (asyncio.run(position()) or 0) > int(offset)


def test_row1_an_erased_replay_memory_and_a_failover_do_not_run_a_command_again(stack: ControlStack) -> None:
    """Delete and recreate `ops.admitted`, restart the control service, re-deliver: the command was
    admitted again and, with the master that ran it out of reach, ran on the IDC's other master."""
    once = stack.command(module="cmd_allowlisted", args={"name": "hostname"})
    command_id = str(once.command_id)
    _, first = by_stage(stack.run(encoded(once), {command_id: 3}))
    ran_on = {idc: result.master for idc, result in first.items()}
    assert set(ran_on) == {"bj", "sh"}
    wait_for(lambda: committed(stack, first["bj"].source), timeout=30)  # so it is not read again

    stop_process(stack.processes["control"])
    erase_topic(stack, stack.settings.ops_admitted_topic)
    ports = {name: master_address(stack, name).port for name in ran_on.values()}
    for name in ran_on.values():  # out of reach: the dispatch fails over to the IDC's other master
        stop_process(stack.processes[name])
    stack.start_control("control")
    try:
        received, again = by_stage(stack.run(encoded(once), {command_id: 3}, timeout=60))
    finally:
        for name, port in ports.items():
            start_master(stack, name, port)
    assert [r.status for r in received] == ["accepted"]  # the replay memory was erased: admitted
    for idc, result in again.items():
        assert result.master != ran_on[idc]  # the other master answered, and it did not run it
        assert (result.status, result.reason) == ("refused", "already_run"), result.detail
        assert f"master {ran_on[idc]} of this IDC ran it before" in result.detail
    assert starts(stack, command_id) == {idc: [master] for idc, master in ran_on.items()}


def test_row2_garbage_naming_a_victims_command_and_operator_changes_none_of_its_outcomes(
    stack: ControlStack,
) -> None:
    """Garbage that merely contained a victim's id made the control service publish a signed
    `rejected` under it: the victim's `ops run --wait` printed "rejected" while the command ran. Garbage
    naming another operator got an audit row attributed to that operator."""
    victim = stack.command()
    command_id = str(victim.command_id)
    named = json.dumps({"command_id": command_id, "operator": "carol", "module": "service"})
    garbage = [
        named.encode() + b" trailing garbage",  # malformed
        b'{"junk": "' + b"z" * 70_000 + b'", ' + named[1:].encode(),  # too large
        victim.model_copy(update={"target": "db*"}).model_dump_json().encode(),  # forged
    ]

    async def victim_waits() -> list[CommandResult]:
        key = control_public_key(stack.settings)
        async with OpsClient(stack.bootstrap, ops_topics(stack.settings), key) as client:
            await stack.publish(stack.settings.ops_commands_topic, garbage, keyed=True)
            return [result async for result in client.run([victim], timeout=30)]

    seen = asyncio.run(victim_waits())
    assert sorted(r.status for r in seen) == ["accepted", "succeeded", "succeeded"]

    rows = stack.history()
    mine = sorted((row["stage"], row["status"]) for row in rows if row["command_id"] == command_id)
    assert mine == [("received", "accepted"), ("result", "succeeded"), ("result", "succeeded")]
    assert not [row for row in rows if row["operator"] == "carol"]  # carol never sent anything


def test_row3_null_header_values_stop_no_reader(stack: ControlStack) -> None:
    """A NULL `omstream-signature` header crashed the operator's client and the sink, and on
    `ops.admitted` hung every later start of the control service."""
    settings = stack.settings
    records: list[bytes | None] = [
        b"{}",
        None,
        CommandResult(command_id=NIL_ID, stage="result", status="failed").model_dump_json().encode(),
    ]
    nulls = [(SIGNATURE_HEADER, None), ("other", None)]
    sink = stack.processes["sink"]
    stop_process(stack.processes["control"])
    for topic in (settings.ops_admitted_topic, settings.ops_commands_topic, settings.ops_results_topic):
        asyncio.run(stack.publish(topic, records, headers=nulls))
    stack.start_control("control")

    done = stack.ping_both_while_spraying(settings.ops_results_topic, records, headers=nulls)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == [
        "accepted",
        *["succeeded"] * 2,
    ]
    assert sink.poll() is None and stack.processes["control"].poll() is None
    forged = [row for row in stack.history() if row["stage"] == "forgery"]
    assert forged  # the sink stored them as what they are, and went on


def test_row4_deeply_nested_outputs_are_a_truthful_result(stack: ControlStack) -> None:
    """An output nested ~200+ deep ran and succeeded but was recorded `unknown/connection_lost`."""
    for depth in DEPTHS:
        deep = stack.command(module="grains", args={"keys": [f"omstream_deep_{depth}"]})
        _, per_idc = by_stage(stack.run(encoded(deep), {str(deep.command_id): 3}))
        for result in per_idc.values():
            assert (result.status, result.truncated) == ("succeeded", True), result.detail
            [output] = [ret.output for ret in result.minions.values()]
            assert '"nested_deeper_than": 32' in json.dumps(output) and depth_of(output) == 33


def master_metric(stack: ControlStack, name: str, sample: str) -> float:
    log = (stack.settings.state_dir / f"{name}.log").read_text()
    port = re.findall(r"metrics on [\d.]+:(\d+)", log)[-1]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample))


def test_row5_one_address_holding_every_masters_handshake_slots_does_not_shut_the_idc_out(
    stack: ControlStack,
) -> None:
    """Anyone who could reach a master's port filled its 32 handshake slots with idle connections and
    the IDC answered `failed/unreachable`. Measured: 100 idle connections from 127.0.0.2 held open on
    each master of bj while the control service (127.0.0.1) dispatches."""
    held: list[socket.socket] = []
    for name in ("bj-1", "bj-2"):
        address = master_address(stack, name)
        for _ in range(100):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect((address.host, address.port))
            held.append(sock)
    try:
        time.sleep(1)
        started = time.monotonic()
        done = stack.cli(
            *shlex.split("ops run --operator demo --idc bj --target * --module ping --wait --json")
        )
        took = time.monotonic() - started
    finally:
        for sock in held:
            sock.close()
    assert done.returncode == 0, done.stdout + done.stderr
    statuses = [(json.loads(line)["status"], json.loads(line)["idc"]) for line in done.stdout.splitlines()]
    assert statuses == [("accepted", ""), ("succeeded", "bj")]
    refused = sum(
        master_metric(stack, name, f'omstream_master_refused_total{{why="{why}"}}')
        for name in ("bj-1", "bj-2")
        for why in ("peer_busy", "rate")
    )
    print(f"200 idle connections from one address: {refused:.0f} refused, `ops run --wait` took {took:.2f} s")
    assert refused >= 150
