"""The control plane as it runs: real Kafka (Tansu), the control service, four masters (rpyc over mutual
TLS, masterless Salt), and the sink writing the audit table into chDB, each its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

import clickhouse
from control.client import OpsClient, new_command
from control.results import CommandResult, claimed_id
from masters.keys import generate_key, load_private_key, sign
from masters.protocol import Command
from omstream.embedded.control_plane import control_plane
from omstream.embedded.stack import (
    service_env,
    service_process,
    topic_partitions,
    wait_until_processed,
)
from omstream.embedded.supervisor import stop_process
from omstream.services import control_public_key, ops_topics
from omstream.settings import Settings
from stream.kafka import ensure_topics
from tests.conftest import broker_for_test

POLICY = """
roles:
  admin: {modules: ["*"], idcs: ["*"], targets: ["*"]}
  web_pinger: {modules: [ping], idcs: [bj], targets: ["web*"]}
  pairs: {modules: [ping], idcs: [bj, sh], targets: ["web-??"]}
  not_vault: {modules: [ping], idcs: [bj, sh], targets: ["[!v]*"]}
operators:
  demo: [admin]
  limited: [web_pinger]
  carol: [pairs]
  dave: [not_vault]
"""
MASTERS = ("bj-1", "bj-2", "sh-1", "sh-2")
Headers = Sequence[tuple[str, bytes | None]]
PING_BOTH_IDCS = shlex.split("ops run --operator demo --idc bj,sh --target * --module ping --wait --json")


@dataclass
class ControlStack:
    settings: Settings
    bootstrap: str
    processes: dict[str, subprocess.Popen[bytes]]
    exits: contextlib.ExitStack

    def run(
        self, payloads: list[bytes], expected: dict[str, int], timeout: float = 30
    ) -> list[CommandResult]:
        """Publish raw commands, each keyed by the id it claims as the operator's client would; collect
        the results about these records (only those the control service signed; without payloads, the
        results naming the expected ids) until each command id has its expected count."""

        async def follow() -> list[CommandResult]:
            results: list[CommandResult] = []
            key = control_public_key(self.settings)
            async with OpsClient(self.bootstrap, ops_topics(self.settings), key) as follower:
                sources = await self.publish(self.settings.ops_commands_topic, payloads, keyed=True)
                async with asyncio.timeout(timeout):
                    async for result in follower.results():
                        if result.source in sources if sources else result.command_id in expected:
                            results.append(result)
                        counts = {cid: sum(r.command_id == cid for r in results) for cid in expected}
                        if counts == expected:
                            return results
            return results

        return asyncio.run(follow())

    async def publish(
        self,
        topic: str,
        payloads: Sequence[bytes | None],
        headers: Headers | None = None,
        keyed: bool = False,
        partition: int | None = None,
    ) -> list[str]:
        """What anyone who can reach the broker can do (records of up to 4 MB, on any partition);
        returns where each record landed (`topic/partition/offset`)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, max_request_size=4 << 20)
        await producer.start()
        try:
            sources = []
            for payload in payloads:
                key = claimed_id(payload).encode() if keyed and payload else None
                key = b"" if payload is None else key  # a NULL value needs a key
                sent = await producer.send_and_wait(
                    topic, payload, key=key, headers=list(headers or []), partition=partition
                )
                sources.append(f"{topic}/{sent.partition}/{sent.offset}")
            return sources
        finally:
            await producer.stop()

    def command(self, operator: str = "demo", **fields: object) -> Command:
        base = new_command(
            load_private_key(self.settings.keys_dir, operator), operator, ["bj", "sh"], "*", "ping", {}
        )
        return sign(base.model_copy(update=fields), load_private_key(self.settings.keys_dir, operator))

    def start_control(self, name: str) -> subprocess.Popen[bytes]:
        """Another replica of the control service, in the same consumer group."""
        process = self.exits.enter_context(
            service_process(self.control_settings(), self.bootstrap, "control", name)
        )
        self.processes[name] = process
        return process

    def control_settings(self) -> Settings:
        """The settings the control service runs with: the masters where they listen."""
        masters: dict[str, list[str]] = {}
        for name in MASTERS:
            ports = re.findall(
                r"rpyc over mTLS on :(\d+)", (self.settings.state_dir / f"{name}.log").read_text()
            )
            masters.setdefault(name.split("-")[0], []).append(f"{name}@127.0.0.1:{ports[-1]}")
        return self.settings.model_copy(update={"masters": masters})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`omstream ARGS` as an operator on this stack runs it."""
        return subprocess.run(
            [sys.executable, "-m", "omstream", *args],
            env=service_env(self.settings, self.bootstrap),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ping_both_while_spraying(
        self,
        topic: str,
        payloads: Sequence[bytes | None],
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`ops run --wait` of a ping to both IDCs while `payloads` keep landing on `topic` (one that
        the operator's client, the control service or the sink reads)."""
        spraying = threading.Event()

        def spray() -> None:
            while not spraying.is_set():
                asyncio.run(self.publish(topic, payloads, headers=headers))

        sprayer = threading.Thread(target=spray)
        sprayer.start()
        try:
            return self.cli(*PING_BOTH_IDCS)
        finally:
            spraying.set()
            sprayer.join()

    def history(self) -> list[dict[str, Any]]:
        """`omstream ops history --json` once the sink has stored every result: the sink is stopped
        (chDB is open in one process at a time) and started again afterwards."""
        sink = self.processes["sink"]
        wait_until_processed(self.settings, self.bootstrap, {}, timeout=60, alive=[sink])
        stop_process(sink)
        done = self.cli("ops", "history", "--json", "--limit", "100000")
        self.processes["sink"] = self.exits.enter_context(
            service_process(self.settings, self.bootstrap, "sink", "sink")
        )
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout))

    def audit_rows(self, *command_ids: str) -> list[dict[str, Any]]:
        """Every stored row of these commands, read straight from the audit table (the sink stopped)."""
        sink = self.processes["sink"]
        wait_until_processed(self.settings, self.bootstrap, {}, timeout=60, alive=[sink])
        stop_process(sink)
        client = clickhouse.connect(self.settings.resolved_clickhouse_dsn)
        try:
            result = client.query(
                "SELECT * FROM ops_audit_log FINAL WHERE has({ids:Array(UUID)}, command_id)",
                parameters={"ids": list(command_ids)},
            )
            rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
        finally:
            client.close()
        self.processes["sink"] = self.exits.enter_context(
            service_process(self.settings, self.bootstrap, "sink", "sink")
        )
        return rows


@contextlib.contextmanager
def control_stack(
    state: Path, partitions: dict[str, int] | None = None, **settings: Any
) -> Iterator[ControlStack]:
    """The whole control plane on a fresh broker, with POLICY and operators demo, limited, carol and
    dave; `settings` override the defaults (the state directory may be prepared beforehand), and
    `partitions` the partition counts of topics."""
    policy = state / "policy.yaml"
    policy.write_text(POLICY)
    defaults: dict[str, Any] = {"kafka_bootstrap": "", "clickhouse_dsn": "", "policy_file": policy}
    configured = Settings(state_dir=state / "state", **(defaults | settings))
    for operator in ("limited", "carol", "dave"):
        generate_key(configured.keys_dir, configured.operators_file, operator)
    with contextlib.ExitStack() as exits:
        bootstrap = exits.enter_context(broker_for_test(configured.state_dir))
        asyncio.run(ensure_topics(bootstrap, topic_partitions(configured) | (partitions or {})))
        sink = exits.enter_context(service_process(configured, bootstrap, "sink", "sink"))
        plane = exits.enter_context(control_plane(configured, bootstrap))
        processes = {"sink": sink, **dict(zip([*MASTERS, "control"], plane, strict=True))}
        yield ControlStack(configured, bootstrap, processes, exits)


def master_executions(settings: Settings) -> float:
    """Operations the masters ran, from their Prometheus endpoints (ports from their logs)."""
    total = 0.0
    for name in MASTERS:
        log = (settings.state_dir / f"{name}.log").read_text()
        ports = re.findall(r"metrics on [\d.]+:(\d+)", log)  # the last: a master may have restarted
        try:
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports[-1]}/metrics", timeout=2).read()
        except OSError:
            continue
        for line in metrics.decode().splitlines():
            if line.startswith("omstream_master_executions_total{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def by_stage(results: list[CommandResult]) -> tuple[list[CommandResult], dict[str, CommandResult]]:
    received = [r for r in results if r.stage == "received"]
    return received, {r.idc: r for r in results if r.stage == "result"}
