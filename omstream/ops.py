"""`omstream ops`: operator keys, the PKI bootstrap, signing and publishing commands, reading results."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from clickhouse_connect.driver.client import Client

from clickhouse import query_rows
from control.commands import Command, CommandResult
from control.dispatch import MasterAddress
from control.keys import generate_key, load_private_key, sign
from control.pki import Pki, ensure_pki
from masters.protocol import Target
from omstream.settings import Settings

DEMO_OPERATOR = "demo"
# The embedded control plane: two IDCs of two masters each, all on this machine.
EMBEDDED_MASTERS = {"bj": ["bj-1", "bj-2"], "sh": ["sh-1", "sh-2"]}


def master_names(masters: dict[str, list[str]]) -> list[str]:
    """Certificate names of the configured masters."""
    return [MasterAddress.parse(address).name for group in masters.values() for address in group]


def bootstrap_pki(settings: Settings) -> list[str]:
    """What a fresh control plane needs: the CA and certificates, and the demo operator's key."""
    masters = (
        master_names(settings.masters)
        if settings.masters
        else [name for names in EMBEDDED_MASTERS.values() for name in names]
    )
    created = ensure_pki(Pki(settings.pki_dir), masters)
    if not (settings.keys_dir / f"{DEMO_OPERATOR}.key").exists():
        generate_key(settings.keys_dir, settings.operators_file, DEMO_OPERATOR)
        created.append(f"operator key {DEMO_OPERATOR}")
    return created


def new_command(
    settings: Settings,
    operator: str,
    idcs: Sequence[str],
    target: Target,
    module: str,
    args: dict[str, Any],
    ttl: datetime.timedelta = datetime.timedelta(minutes=5),
) -> Command:
    """A command signed with `operator`'s key from the keys directory."""
    now = datetime.datetime.now(datetime.UTC)
    command = Command(
        command_id=uuid.uuid4(),
        operator=operator,
        idc=list(idcs),
        target=target,
        module=module,
        args=args,
        issued_at=now,
        expires_at=now + ttl,
    )
    return sign(command, load_private_key(settings.keys_dir, operator))


async def publish(bootstrap: str, topic: str, payloads: Sequence[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        for payload in payloads:
            await producer.send(topic, payload)
        await producer.flush()
    finally:
        await producer.stop()


class ResultFollower:
    """Reads `ops.results` from now on (start it before publishing), yielding each command's results."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._partition = TopicPartition(topic, 0)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=20)

    async def __aenter__(self) -> ResultFollower:
        await self._consumer.start()
        self._consumer.assign([self._partition])
        # Tansu may report the end low; reading a few older results is harmless, they are filtered out.
        await self._consumer.seek_to_end(self._partition)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def results(self) -> AsyncIterator[CommandResult]:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    yield CommandResult.model_validate_json(record.value or b"{}")


class ResultSets:
    """The results of some commands, gathered until each is complete: rejected, or answered by every IDC."""

    def __init__(self, commands: Sequence[Command]) -> None:
        self._idcs = {str(command.command_id): set(command.idc) for command in commands}
        self._results: dict[str, list[CommandResult]] = {command_id: [] for command_id in self._idcs}

    def add(self, result: CommandResult) -> bool:
        """Keep a result of one of these commands; False for a result of any other."""
        if result.command_id not in self._results:
            return False
        self._results[result.command_id].append(result)
        return True

    def complete(self, command_id: str) -> bool:
        results = self._results[command_id]
        if any(result.status == "rejected" for result in results):
            return True
        return {result.idc for result in results if result.stage == "result"} >= self._idcs[command_id]

    def all_complete(self) -> bool:
        return all(self.complete(command_id) for command_id in self._results)


async def run_and_wait(
    settings: Settings, bootstrap: str, commands: Sequence[Command], timeout: float
) -> AsyncIterator[CommandResult]:
    """Publish `commands` and yield their results as they arrive, until each is complete or time is up."""
    result_sets = ResultSets(commands)
    async with ResultFollower(bootstrap, settings.ops_results_topic) as follower:
        await publish(
            bootstrap, settings.ops_commands_topic, [c.model_dump_json().encode() for c in commands]
        )
        async with asyncio.timeout(timeout):
            async for result in follower.results():
                if not result_sets.add(result):
                    continue
                yield result
                if result_sets.all_complete():
                    return


def history(client: Client, limit: int) -> list[dict[str, Any]]:
    return query_rows(client, "ops_history", limit=limit)


def parse_target(text: str) -> Target:
    """`a,b` is a list of hosts; anything else (a glob, `G@grain:value`) is one target string."""
    return [host.strip() for host in text.split(",") if host.strip()] if "," in text else text


def parse_args(pairs: Sequence[str]) -> dict[str, Any]:
    """`k=v` pairs; a value is JSON when it parses as JSON (numbers, lists, true), else a string."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"bad --arg {pair!r}: expected key=value")
        try:
            args[key] = json.loads(value)
        except ValueError:
            args[key] = value
    return args
