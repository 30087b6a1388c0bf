"""The operator's client: sign commands, publish them to `ops.commands`, follow their results.

What `omstream ops` uses, and what a script of an operator's would: keys come from the operator's
keys directory, Kafka from the bootstrap address, and nothing else is read from the environment.
Given the control service's public key, it takes only results the control service signed; records
it cannot read are skipped, counted (`skipped`) and logged once, never a reason to stop. A command is
published keyed by its id (so it lands on the partition the control service admits it from), and
its outcomes are the results about the very record published (`source`: topic/partition/offset as
the broker acknowledged it), never whatever names its id.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from clickhouse_connect.driver.client import Client
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from clickhouse import query_rows
from control.results import CommandResult, UnreadableResult, read_result
from masters.keys import sign
from masters.protocol import Command, Target
from stream.kafka import kafka_options

log = logging.getLogger("omstream.ops")


@dataclass(frozen=True)
class OpsTopics:
    commands: str = "ops.commands"  # signed commands, from operators to the control service
    results: str = "ops.results"  # every outcome, from the control service (to the audit table)


def new_command(
    key: Ed25519PrivateKey,
    operator: str,
    idcs: Sequence[str],
    target: Target,
    module: str,
    args: dict[str, Any],
    ttl: datetime.timedelta = datetime.timedelta(minutes=5),
) -> Command:
    """A command of `operator`, signed with `key` (theirs), valid from now for `ttl`."""
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
    return sign(command, key)


async def publish(bootstrap: str, topic: str, commands: Sequence[Command]) -> None:
    producer = AIOKafkaProducer(**kafka_options(bootstrap), linger_ms=0)
    await producer.start()
    try:
        for command in commands:
            await producer.send(topic, command.model_dump_json().encode(), key=command_key(command))
        await producer.flush()
    finally:
        await producer.stop()


def command_key(command: Command) -> bytes:
    """The Kafka key of a command: its id, whose hash is the partition the control service admits it from."""
    return str(command.command_id).encode()


class ResultSets:
    """The results about some published records (each `topic/partition/offset`), gathered until each
    is complete: rejected, or answered by every IDC of its command."""

    def __init__(self, published: dict[str, Command]) -> None:
        self._idcs = {source: set(command.idc) for source, command in published.items()}
        self._results: dict[str, list[CommandResult]] = {source: [] for source in published}

    def add(self, result: CommandResult) -> bool:
        """Keep a result about one of these records; False for a result about any other."""
        if result.source not in self._results:
            return False
        self._results[result.source].append(result)
        return True

    def complete(self, source: str) -> bool:
        results = self._results[source]
        if any(result.stage == "received" and result.status == "rejected" for result in results):
            return True
        return {result.idc for result in results if result.stage == "result"} >= self._idcs[source]


class OpsClient:
    """An operator's connection: publishes commands and follows `ops.results` from when it opened,
    taking only results signed by `control_key` when it is given."""

    def __init__(
        self, bootstrap: str, topics: OpsTopics = OpsTopics(), control_key: Ed25519PublicKey | None = None
    ) -> None:
        self._topics = topics
        self._control_key = control_key
        self._producer = AIOKafkaProducer(**kafka_options(bootstrap), linger_ms=0)
        self._results = TopicPartition(topics.results, 0)
        self._consumer = AIOKafkaConsumer(**kafka_options(bootstrap), fetch_max_wait_ms=20)
        self.skipped = 0  # records of the results topic that are no signed result
        self.published: dict[str, Command] = {}  # each command published, by its record (`source`)

    async def __aenter__(self) -> OpsClient:
        await self._producer.start()
        await self._consumer.start()
        self._consumer.assign([self._results])
        # Tansu may report the end low; reading a few older results is harmless, they are filtered out.
        await self._consumer.seek_to_end(self._results)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()
        await self._producer.stop()

    async def publish(self, commands: Sequence[Command]) -> dict[str, Command]:
        """Publish `commands`; returns each one by the record it became (`topic/partition/offset`)."""
        topic = self._topics.commands
        sent = [
            await self._producer.send(topic, command.model_dump_json().encode(), key=command_key(command))
            for command in commands
        ]
        published = {}
        for command, delivery in zip(commands, sent, strict=True):
            metadata = await delivery
            published[f"{topic}/{metadata.partition}/{metadata.offset}"] = command
        self.published |= published
        return published

    async def run(
        self, commands: Sequence[Command], timeout: float, on_complete: Callable[[str], None] | None = None
    ) -> AsyncIterator[CommandResult]:
        """Publish `commands` and yield the results about the records published as they arrive, until
        each is complete (then `on_complete` gets its record's `source`) or time is up."""
        published = await self.publish(commands)
        result_sets = ResultSets(published)
        completed: set[str] = set()
        async with asyncio.timeout(timeout):
            async for result in self.results():
                if result.source in completed or not result_sets.add(result):
                    continue
                yield result
                if result_sets.complete(result.source):
                    completed.add(result.source)
                    if on_complete:
                        on_complete(result.source)
                if len(completed) == len(published):
                    return

    async def results(self) -> AsyncIterator[CommandResult]:
        """Every result published since the client opened (or a little before), as it arrives."""
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    try:
                        yield read_result(record.value or b"", record.headers, self._control_key)
                    except UnreadableResult as error:
                        self.skipped += 1
                        if self.skipped == 1:
                            log.warning(
                                "skipped a record of %s at offset %d (%s); more are only counted",
                                self._topics.results,
                                record.offset,
                                error.why,
                            )


async def run_and_wait(
    bootstrap: str,
    topics: OpsTopics,
    commands: Sequence[Command],
    timeout: float,
    control_key: Ed25519PublicKey | None = None,
) -> AsyncIterator[tuple[Command, CommandResult]]:
    """Publish `commands` and yield each result with the command it is about (known by the record
    published, even when the result cannot name it), until each is complete or time is up."""
    async with OpsClient(bootstrap, topics, control_key) as client:
        async for result in client.run(commands, timeout):
            yield client.published[result.source], result


def history(client: Client, limit: int, timezone: str) -> list[dict[str, Any]]:
    """The latest `limit` records of the audit table, newest first, their times in `timezone`; none
    before the sink first stored anything."""
    if not client.command("EXISTS TABLE ops_audit_log"):
        return []
    return query_rows(client, "ops_history", limit=limit, tz=timezone)


class BadArgument(ValueError):
    """A module argument that is not `key=value`."""


def parse_target(text: str) -> Target:
    """`a,b` is a list of hosts; anything else (a glob, `G@grain:value`) is one target string."""
    return [host.strip() for host in text.split(",") if host.strip()] if "," in text else text


def parse_args(pairs: Sequence[str]) -> dict[str, Any]:
    """`k=v` pairs; a value is JSON when it parses as JSON (numbers, lists, true), else a string."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadArgument(f"bad --arg {pair!r}: expected key=value")
        try:
            args[key] = json.loads(value)
        except ValueError:
            args[key] = value
    return args
