"""Replay memory shared by every control replica and kept across restarts: the `ops.admitted` topic.

Before a command is dispatched, its admission is written there (key: its `command_id`; value: where
it was read on `ops.commands`, when it expires, and which IDCs' results are published), signed by
the control service. A replica reads the topic to its end each time partitions of `ops.commands`
are assigned to it, before it handles any of their commands, so whatever another replica admitted is
known before that replica's commands can reach this one. The topic is compacted: the latest record per
command is what counts.

A command read again at the position it was admitted from is a redelivery (a replica stopped before
it committed), not a replay: its IDCs without a published result get an `unknown` result, because the
replica that stopped may have dispatched it. The same command at any other position is a replay.
"""

from __future__ import annotations

import datetime
import logging

from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AwareDatetime, BaseModel, ValidationError

from control import metrics
from control.signing import Purpose, is_signed, signed_headers
from masters.protocol import Command, CommandRejected
from stream.kafka import read_to_end

log = logging.getLogger("omstream.control")

# A record on ops.admitted is a hundred bytes; anything far bigger is not one.
_MAX_RECORD_BYTES = 16 * 1024


class Admitted(BaseModel):
    command_id: str
    partition: int  # where the command was read on ops.commands
    offset: int
    expires_at: AwareDatetime
    idcs: list[str]
    done: list[str] = []  # IDCs whose result is published

    def at(self, partition: int, offset: int) -> bool:
        return (self.partition, self.offset) == (partition, offset)

    def pending(self) -> list[str]:
        return [idc for idc in self.idcs if idc not in self.done]


class AdmittedCommands:
    """What this replica knows was admitted, by any replica, kept until a while after it expires: a
    replay within that time is `replayed`; after it, the command's own expiry rejects it."""

    def __init__(self, keep_after_expiry: datetime.timedelta) -> None:
        self._keep = keep_after_expiry
        self._entries: dict[str, Admitted] = {}

    def get(self, command: Command) -> Admitted | None:
        return self._entries.get(str(command.command_id))

    def admit(self, command: Command, partition: int, offset: int, now: datetime.datetime) -> Admitted:
        """Remember `command` as admitted now; raises CommandRejected (`replayed`) if it was before."""
        command_id = str(command.command_id)
        if command_id in self._entries:
            raise CommandRejected("replayed", f"command {command_id} was already received")
        self._prune(now)
        entry = Admitted(
            command_id=command_id,
            partition=partition,
            offset=offset,
            expires_at=command.expires_at,
            idcs=command.idc,
        )
        self._entries[command_id] = entry
        return entry

    def learn(self, entry: Admitted) -> None:
        """An admission read from the topic: kept unless this replica knows more of it."""
        known = self._entries.get(entry.command_id)
        if known is None or set(entry.done) >= set(known.done):
            self._entries[entry.command_id] = entry

    def finished(self, command_id: str, idc: str) -> Admitted:
        entry = self._entries[command_id]
        updated = entry.model_copy(update={"done": [*entry.done, idc]})
        self._entries[command_id] = updated
        return updated

    def _prune(self, now: datetime.datetime) -> None:
        if len(self._entries) > 10_000:
            self._entries = {
                key: entry for key, entry in self._entries.items() if entry.expires_at + self._keep >= now
            }


class AdmittedTopic:
    """Writes admissions to `ops.admitted` and reads what the other replicas wrote."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        key: Ed25519PrivateKey,
        memory: AdmittedCommands,
        producer: AIOKafkaProducer,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._key = key
        self._memory = memory
        self._producer = producer
        self._read_to = 0  # the offset after the last record read

    async def write(self, entry: Admitted) -> None:
        value = entry.model_dump_json().encode()
        headers = signed_headers(self._key, Purpose.ADMITTED, value)
        await self._producer.send_and_wait(
            self._topic, key=entry.command_id.encode(), value=value, headers=headers
        )

    async def catch_up(self) -> int:
        """Read what was written since the last catch-up, to the topic's end; returns how many
        admissions it learnt (records that are not signed admissions are skipped and counted)."""
        public_key = self._key.public_key()
        learnt = 0
        async for record in read_to_end(self._bootstrap, self._topic, self._read_to):
            self._read_to = record.offset + 1
            value = record.value or b""
            where = f"offset {record.offset}"
            if len(value) > _MAX_RECORD_BYTES:
                metrics.skipped(log, self._topic, "oversized", where)
            elif not is_signed(public_key, Purpose.ADMITTED, value, record.headers):
                metrics.skipped(log, self._topic, "unsigned", where)
            else:
                try:
                    self._memory.learn(Admitted.model_validate_json(value))
                    learnt += 1
                except ValidationError:
                    metrics.skipped(log, self._topic, "malformed", where)
        return learnt
