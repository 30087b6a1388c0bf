"""`omstream control`: admits signed commands from `ops.commands`, dispatches them, publishes outcomes.

Admission, in order: at most MAX_COMMAND_BYTES, well-formed JSON of the command model, a valid
signature of a registered operator, read on the partition of `ops.commands` its id hashes to, not
expired and not longer-lived than allowed, a known module with valid args, allowed by the RBAC
policy, known IDCs, not admitted before by any replica (`ops.admitted`). Every rejection is a result
with a reason; nothing rejected reaches a master. A rejection names the command, its operator and
module only once the operator's signature proved them; before that it names only the record it is
about (`source`). An accepted command is recorded on `ops.admitted`, then goes to all its IDCs in
parallel. Every outcome is signed with the control service's key, so no one else can write a result.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.partitioner import DefaultPartitioner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from control import metrics
from control.admitted import Admitted, AdmittedCommands, AdmittedTopic
from control.dispatch import Attempt, Idc, MasterAddress, MasterClient, MasterUnavailable, ReplyLost
from control.policy import Policy, load_policy
from control.results import NIL_ID, CommandResult, Status
from control.signing import Purpose, load_signing_key, signed_headers
from masters.keys import load_registry, verify
from masters.modules import ModuleRejected, validate_args
from masters.protocol import (
    Command,
    CommandRejected,
    MasterRequest,
    MinionReturn,
    bounded_outputs,
    check_times,
    parse_command,
)
from masters.tls import TlsFiles, client_context
from stream.kafka import GroupTimings, kafka_options

log = logging.getLogger("omstream.control")


@dataclass(frozen=True)
class ControlConfig:
    bootstrap: str
    commands_topic: str
    results_topic: str
    admitted_topic: str  # the replay memory shared by replicas (compacted)
    group: str
    timings: GroupTimings
    masters: dict[str, list[MasterAddress]]  # per IDC
    tls: TlsFiles  # the control service's client certificate
    signing_key: Path  # the control service's Ed25519 key, which signs what it publishes
    policy_file: Path
    operators_file: Path  # the registry of operators' public keys
    timeout_s: float  # time an IDC has to return a result set
    connect_timeout_s: float
    idc_concurrency: int  # commands in flight per IDC
    calls_per_master: int  # calls in flight to one master: what queues meanwhile goes in one batch
    max_lifetime_s: int  # longest accepted expires_at - issued_at; bounds the replay memory


_MAX_IN_FLIGHT = 2000
_MAX_DETAIL = 1000  # characters of a reason in words (a Salt error can be long)


@dataclass
class Admission:
    policy: Policy
    operators: dict[str, Ed25519PublicKey]
    idcs: set[str]
    max_lifetime: datetime.timedelta
    admitted: AdmittedCommands

    def verify(self, command: Command) -> None:
        """Raises CommandRejected unless a registered operator signed the command: until then nothing
        in it, not even its id, is known to be anyone's."""
        verify(command, self.operators)

    def admit(self, command: Command, partition: int, offset: int, now: datetime.datetime) -> Admitted:
        """For a verified command: raises CommandRejected with the first reason it may not run; else
        remembers it."""
        check_times(command, now, self.max_lifetime)
        try:
            validate_args(command.module, command.args)
        except ModuleRejected as error:
            raise CommandRejected(error.reason, str(error)) from None
        self.policy.check(command)
        unknown = [idc for idc in command.idc if idc not in self.idcs]
        if unknown:
            raise CommandRejected("unknown_idc", f"no masters configured for {', '.join(unknown)}")
        return self.admitted.admit(command, partition, offset, now)  # last: only what runs is remembered


def rejected_result(error: CommandRejected, proven: Command | None, source: str) -> CommandResult:
    """A rejection of the record at `source`. It names the command (id, operator, module) only when
    `proven`, i.e. its operator's signature verified: bytes that merely contain an id or a name (too
    large, too deep, malformed, unsigned, forged) get the nil id, so no one's command or name can be
    made to look rejected by garbage. The operator's client matches its rejection by `source`."""
    fields = {
        "stage": "received",
        "status": "rejected",
        "reason": error.reason,
        "detail": _clip(str(error)),
        "source": source,
    }
    if proven is None:
        return CommandResult(command_id=NIL_ID, **fields)
    return CommandResult.about(proven, **fields)


def home_partition(command: Command, partitions: int) -> int:
    """The partition of `ops.commands` a command belongs on: Kafka's default partitioner (murmur2) of
    its id as the operator's client keys it. One partition, so one replica at a time, admits it."""
    key = str(command.command_id).encode()
    return int(DefaultPartitioner()(key, list(range(partitions)), list(range(partitions))))


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else f"{text[:_MAX_DETAIL]}… [truncated]"


class CommitTracker:
    """Commits a partition only up to its oldest command still in flight: a crash re-delivers, not loses."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, deque[int]] = {}
        self._done: dict[TopicPartition, set[int]] = {}

    def started(self, partition: TopicPartition, offset: int) -> None:
        self._pending.setdefault(partition, deque()).append(offset)

    def finished(self, partition: TopicPartition, offset: int) -> None:
        self._done.setdefault(partition, set()).add(offset)

    def committable(self) -> dict[TopicPartition, int]:
        positions = {}
        for partition, pending in self._pending.items():
            done = self._done.get(partition, set())
            while pending and pending[0] in done:
                offset = pending.popleft()
                done.discard(offset)
                positions[partition] = offset + 1
        return positions


@dataclass(frozen=True)
class IdcOutcome:
    """How one IDC's part of a command ended: its master's result set, or why there is none."""

    status: Status
    reason: str
    detail: str
    master: str = ""
    minions: dict[str, MinionReturn] = field(default_factory=dict)
    truncated: bool = False
    omitted: int = 0


class InFlight:
    """The commands this replica is handling (at most _MAX_IN_FLIGHT), and how far it may commit."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._tracker = CommitTracker()
        self._slots = asyncio.Semaphore(_MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, record: ConsumerRecord[bytes, bytes], handle: Coroutine[Any, Any, None]) -> None:
        await self._slots.acquire()
        partition = TopicPartition(record.topic, record.partition)
        self._tracker.started(partition, record.offset)
        task = asyncio.create_task(handle)
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._tracker.finished(partition, record.offset)
            self._slots.release()
            metrics.IN_FLIGHT.set(len(self._tasks))

        task.add_done_callback(done)
        metrics.IN_FLIGHT.set(len(self._tasks))

    async def commit(self) -> None:
        positions = self._tracker.committable()
        if positions:
            await self._consumer.commit(positions)

    async def settle(self) -> None:
        """Finish every command in flight and commit: before its partitions move to another replica,
        so that replica does not read them again."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self.commit()


class Handover(ConsumerRebalanceListener):
    """Partitions move between replicas only with nothing in flight, and a replica handles no command
    of the partitions it is given before it has learnt what was admitted (`take`)."""

    def __init__(self, consumer: AIOKafkaConsumer, in_flight: InFlight, admitted: AdmittedTopic) -> None:
        self._consumer = consumer
        self._in_flight = in_flight
        self._admitted = admitted
        self._ready = asyncio.Event()
        self._assignments = 0
        self.partitions = 1  # of ops.commands, as the metadata of the last assignment says

    async def on_partitions_revoked(self, revoked: object) -> None:
        self._ready.clear()
        await self._in_flight.settle()

    async def on_partitions_assigned(self, assigned: object) -> None:
        self._ready.clear()
        learnt = await self._admitted.catch_up()
        log.info("learnt %d admitted commands before taking %s", learnt, assigned)
        assignment = self._consumer.assignment()
        topics = {partition.topic for partition in assignment}
        known = [self._consumer.partitions_for_topic(topic) or set() for topic in topics]
        highest = [partition.partition + 1 for partition in assignment]
        self.partitions = max([len(partitions) for partitions in known] + highest + [1])
        self._assignments += 1
        self._ready.set()

    async def take(self) -> list[ConsumerRecord[bytes, bytes]]:
        """The next records to handle. The consumer fetches as soon as partitions are assigned, even
        while the replica still learns what was admitted; records fetched under an assignment that
        has since changed are put back, to be read again from where this assignment starts."""
        assignments = self._assignments
        batches = await self._consumer.getmany(timeout_ms=100)
        await self._ready.wait()
        if self._assignments == assignments:
            return [record for records in batches.values() for record in records]
        for partition, records in batches.items():
            if partition in self._consumer.assignment():
                self._consumer.seek(partition, records[0].offset)
        return []


class ControlService:
    def __init__(
        self, config: ControlConfig, admission: Admission, idcs: dict[str, Idc], key: Ed25519PrivateKey
    ) -> None:
        self._config = config
        self._admission = admission
        self._idcs = idcs
        self._key = key
        # one batch holds the records of many concurrent commands: with small batches, every waiting
        # send retries each time one is drained, and a burst of commands spends its time there
        self._producer = AIOKafkaProducer(
            **kafka_options(config.bootstrap), linger_ms=0, max_batch_size=1 << 20
        )
        self._admitted = AdmittedTopic(
            config.bootstrap, config.admitted_topic, key, admission.admitted, self._producer
        )

    async def handle(self, raw: bytes, partition: int, offset: int, partitions: int = 1) -> None:
        """Admit one command read at `partition` (of `partitions`) and `offset`, record and publish
        that, then each IDC's result set as it arrives."""
        proven = None
        source = self._source(partition, offset)
        try:
            command = parse_command(raw)
            self._admission.verify(command)
            proven = command
            home = home_partition(command, partitions)
            if partition != home:
                raise CommandRejected(
                    "wrong_partition", f"read on partition {partition}; its id belongs on partition {home}"
                )
            known = self._admission.admitted.get(command)
            if known is not None and known.at(partition, offset):
                await self._resume(command, known)
                return
            entry = self._admission.admit(command, partition, offset, datetime.datetime.now(datetime.UTC))
        except CommandRejected as error:
            metrics.COMMANDS.labels("rejected", error.reason).inc()
            await self._publish(rejected_result(error, proven, source))
            return
        metrics.COMMANDS.labels("accepted", "").inc()
        await self._dispatch(command, entry)

    async def _dispatch(self, command: Command, entry: Admitted) -> None:
        """Record the admission for every replica, then publish it (so whoever sees it accepted can
        count on every replica knowing it), then run the command in each IDC. The acceptance is queued
        before any result (one partition keeps their order); its acknowledgement is not waited for
        before dispatching, which saves a broker round trip per command."""
        await self._admitted.write(entry)
        source = self._source(entry.partition, entry.offset)
        accepted = CommandResult.about(command, stage="received", status="accepted", source=source)
        delivery = await self._send(accepted)
        request = MasterRequest(command=command).model_dump_json()
        await asyncio.gather(*(self._run_in(command, entry, idc, request) for idc in command.idc))
        await delivery

    def _source(self, partition: int, offset: int) -> str:
        """Where a command was read: each record it gets is its own, even for the same command."""
        return f"{self._config.commands_topic}/{partition}/{offset}"

    async def _resume(self, command: Command, known: Admitted) -> None:
        """The same record again: the replica that admitted it stopped before committing it (a replica
        hands partitions over only with nothing in flight). It may have dispatched it: each IDC left
        without a result gets `unknown`, and nothing is dispatched again."""
        detail = "the control service that dispatched it stopped before its result: it may have run"
        for idc in known.pending():
            outcome = IdcOutcome("unknown", "interrupted", detail)
            await self._finish(command, known, idc, outcome, duration_ms=0.0)

    async def _run_in(self, command: Command, entry: Admitted, idc: str, request_json: str) -> None:
        started = time.monotonic()
        outcome = await self._outcome(command, idc, request_json)
        await self._finish(command, entry, idc, outcome, (time.monotonic() - started) * 1000)

    async def _finish(
        self, command: Command, entry: Admitted, idc: str, outcome: IdcOutcome, duration_ms: float
    ) -> None:
        minions, truncated, omitted = bounded_outputs(outcome.minions)
        result = CommandResult.about(
            command,
            stage="result",
            source=self._source(entry.partition, entry.offset),
            idc=idc,
            duration_ms=duration_ms,
            status=outcome.status,
            reason=outcome.reason,
            detail=_clip(outcome.detail),
            master=outcome.master,
            minions=minions,
            truncated=outcome.truncated or truncated,
            omitted=outcome.omitted + omitted,
        )
        metrics.IDC_RESULTS.labels(idc, result.status).inc()
        await self._publish(result)
        await self._admitted.write(self._admission.admitted.finished(result.command_id, idc))

    async def _outcome(self, command: Command, idc: str, request_json: str) -> IdcOutcome:
        """The IDC's result set, or why there is none: `timeout` only when the request was never sent
        (so it did not run), `unknown` when it was and no answer came."""
        timeout = self._config.timeout_s
        attempt = Attempt()
        try:
            reply = await asyncio.wait_for(
                self._idcs[idc].dispatch(str(command.command_id), request_json, attempt), timeout
            )
        except TimeoutError:
            if attempt.abandon():
                return IdcOutcome(
                    "timeout", "timeout", f"not sent to a master within {timeout:g} s: it did not run"
                )
            return IdcOutcome("unknown", "no_reply", f"no result set within {timeout:g} s: it may have run")
        except MasterUnavailable as error:
            return IdcOutcome("failed", "unreachable", str(error))
        except ReplyLost as error:
            return IdcOutcome("unknown", "connection_lost", str(error))
        return IdcOutcome(
            reply.status,
            reply.reason,
            reply.detail,
            reply.master,
            reply.minions,
            reply.truncated,
            reply.omitted,
        )

    async def _publish(self, result: CommandResult) -> None:
        await (await self._send(result))

    async def _send(self, result: CommandResult) -> asyncio.Future[Any]:
        """Queue a signed result on the results topic; the future is its acknowledgement."""
        value = result.model_dump_json().encode()
        return await self._producer.send(
            self._config.results_topic,
            key=result.command_id.encode(),
            value=value,
            headers=signed_headers(self._key, Purpose.RESULT, value),
        )

    async def run(self) -> None:
        config = self._config
        consumer = AIOKafkaConsumer(
            **kafka_options(config.bootstrap),
            group_id=config.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
            session_timeout_ms=config.timings.session_ms,
            heartbeat_interval_ms=config.timings.heartbeat_ms,
            # a replica giving up partitions first finishes its commands in flight (see _Handover)
            rebalance_timeout_ms=max(config.timings.rebalance_ms, int((config.timeout_s + 10) * 1000)),
        )
        in_flight = InFlight(consumer)
        handover = Handover(consumer, in_flight, self._admitted)
        await self._producer.start()
        try:
            consumer.subscribe([config.commands_topic], listener=handover)
            await consumer.start()
            try:
                await self._consume(handover, in_flight)
            finally:
                await consumer.stop()
        finally:
            await self._producer.stop()

    async def _consume(self, handover: Handover, in_flight: InFlight) -> None:
        while True:
            for record in await handover.take():
                await in_flight.start(record, self._handle_record(record, handover.partitions))
            await in_flight.commit()

    async def _handle_record(self, record: ConsumerRecord[bytes, bytes], partitions: int) -> None:
        try:
            await self.handle(record.value or b"", record.partition, record.offset, partitions)
        except Exception:  # one bad command must not stop the service; it is logged and counted
            log.exception("command at offset %s failed", record.offset)
            metrics.COMMANDS.labels("error", "internal").inc()


def build_idcs(config: ControlConfig, pool: ThreadPoolExecutor) -> dict[str, Idc]:
    context = client_context(config.tls)
    return {
        idc: Idc(
            idc,
            [
                MasterClient(address, context, config.connect_timeout_s, config.timeout_s)
                for address in addresses
            ],
            config.idc_concurrency,
            pool,
            config.calls_per_master,
        )
        for idc, addresses in config.masters.items()
    }


def build_admission(config: ControlConfig) -> Admission:
    lifetime = datetime.timedelta(seconds=config.max_lifetime_s)
    return Admission(
        policy=load_policy(config.policy_file),
        operators=load_registry(config.operators_file),
        idcs=set(config.masters),
        max_lifetime=lifetime,
        admitted=AdmittedCommands(keep_after_expiry=lifetime),
    )


async def serve(config: ControlConfig) -> None:
    """Run the control service until cancelled."""
    admission = build_admission(config)
    key = load_signing_key(config.signing_key)
    workers = config.calls_per_master * max(1, sum(len(masters) for masters in config.masters.values()))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpyc") as pool:
        idcs = build_idcs(config, pool)
        try:
            await ControlService(config, admission, idcs, key).run()
        finally:
            for idc in idcs.values():
                idc.close()
