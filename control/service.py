"""`omstream control`: admits signed commands from `ops.commands`, dispatches them, publishes outcomes.

Admission, in order: well-formed JSON of the command model, a valid signature of a registered
operator, not expired and not longer-lived than allowed, not seen before (`command_id`), a known
module with valid args, allowed by the RBAC policy, known IDCs. Every rejection is a result with a
reason; nothing rejected reaches a master. An accepted command goes to all its IDCs in parallel.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from control import metrics
from control.dispatch import Idc, MasterAddress, MasterClient, MasterUnavailable
from control.policy import Policy, load_policy
from control.results import CommandResult, Status
from masters.keys import load_registry, verify
from masters.modules import ModuleRejected, validate_args
from masters.protocol import Command, CommandRejected, MasterRequest, MinionReturn, first_error
from masters.tls import TlsFiles, client_context
from stream.kafka import GroupTimings, read_to_end

log = logging.getLogger("omstream.control")


@dataclass(frozen=True)
class ControlConfig:
    bootstrap: str
    commands_topic: str
    results_topic: str
    group: str
    timings: GroupTimings
    masters: dict[str, list[MasterAddress]]  # per IDC
    tls: TlsFiles  # the control service's client certificate
    policy_file: Path
    operators_file: Path  # the registry of operators' public keys
    timeout_s: float  # time an IDC has to return a result set
    connect_timeout_s: float
    idc_concurrency: int  # commands in flight per IDC
    max_lifetime_s: int  # longest accepted expires_at - issued_at; bounds the replay memory


# A command issued a little "in the future" is a clock skew, not an attack.
_CLOCK_SKEW = datetime.timedelta(seconds=60)
_MAX_IN_FLIGHT = 2000


class SeenCommands:
    """`command_id`s already admitted, kept until they expire: a replay after that is rejected as expired."""

    def __init__(self) -> None:
        self._expiry: dict[str, datetime.datetime] = {}

    def remember(self, command_id: str, expires_at: datetime.datetime) -> None:
        self._expiry[command_id] = expires_at

    def add(self, command: Command, now: datetime.datetime) -> None:
        command_id = str(command.command_id)
        if command_id in self._expiry:
            raise CommandRejected("replayed", f"command {command_id} was already received")
        if len(self._expiry) > 10_000:
            self._expiry = {key: expiry for key, expiry in self._expiry.items() if expiry >= now}
        self._expiry[command_id] = command.expires_at


async def recall_admitted(bootstrap: str, results_topic: str, seen: SeenCommands) -> int:
    """Re-learn, from `ops.results`, the commands admitted before a restart that have not expired yet:
    a restarted service must still refuse their replays. Returns how many it recalled."""
    now = datetime.datetime.now(datetime.UTC)
    recalled = 0
    async for record in read_to_end(bootstrap, results_topic):
        result = CommandResult.model_validate_json(record.value or b"{}")
        if result.status == "accepted" and result.expires_at and result.expires_at > now:
            seen.remember(result.command_id, result.expires_at)
            recalled += 1
    return recalled


@dataclass
class Admission:
    policy: Policy
    operators: dict[str, Ed25519PublicKey]
    idcs: set[str]
    max_lifetime: datetime.timedelta
    seen: SeenCommands = field(default_factory=SeenCommands)

    def admit(self, raw: bytes, now: datetime.datetime) -> Command:
        command = _parse(raw)
        verify(command, self.operators)
        self._check_times(command, now)
        self.seen.add(command, now)
        try:
            validate_args(command.module, command.args)
        except ModuleRejected as error:
            raise CommandRejected(error.reason, str(error)) from None
        self.policy.check(command)
        unknown = [idc for idc in command.idc if idc not in self.idcs]
        if unknown:
            raise CommandRejected("unknown_idc", f"no masters configured for {', '.join(unknown)}")
        return command

    def _check_times(self, command: Command, now: datetime.datetime) -> None:
        if command.expires_at <= now:
            raise CommandRejected("expired", f"the command expired at {command.expires_at.isoformat()}")
        if command.issued_at > now + _CLOCK_SKEW:
            raise CommandRejected("not_yet_valid", f"issued in the future ({command.issued_at.isoformat()})")
        if command.expires_at - command.issued_at > self.max_lifetime:
            raise CommandRejected("lifetime_too_long", f"a command may live at most {self.max_lifetime}")


def _parse(raw: bytes) -> Command:
    try:
        return Command.model_validate_json(raw)
    except ValidationError as error:
        raise CommandRejected("malformed", first_error(error)) from None


def rejected_result(raw: bytes, error: CommandRejected) -> CommandResult:
    """A rejection, about as much of the command as could be read (its id, at least, when present)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    known = body if isinstance(body, dict) else {}
    return CommandResult(
        command_id=_uuid_or_nil(known.get("command_id")),
        stage="received",
        status="rejected",
        reason=error.reason,
        detail=str(error),
        operator=str(known.get("operator") or ""),
        module=str(known.get("module") or ""),
    )


def _uuid_or_nil(value: object) -> str:
    # The audit is keyed by UUID: an id that is not one is recorded as the nil UUID (the raw is lost
    # only for input that was never a command).
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(uuid.UUID(int=0))


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


class ControlService:
    def __init__(self, config: ControlConfig, admission: Admission, idcs: dict[str, Idc]) -> None:
        self._config = config
        self._admission = admission
        self._idcs = idcs
        self._producer: AIOKafkaProducer | None = None

    async def handle(self, raw: bytes) -> None:
        """Admit one command, publish that, then each IDC's result set as it arrives."""
        try:
            command = self._admission.admit(raw, datetime.datetime.now(datetime.UTC))
        except CommandRejected as error:
            metrics.COMMANDS.labels("rejected", error.reason).inc()
            await self._publish(rejected_result(raw, error))
            return
        metrics.COMMANDS.labels("accepted", "").inc()
        await self._publish(CommandResult.about(command, stage="received", status="accepted"))
        await asyncio.gather(*(self._run_in(command, idc) for idc in command.idc))

    async def _run_in(self, command: Command, idc: str) -> None:
        request = MasterRequest(
            command_id=str(command.command_id),
            idc=idc,
            module=command.module,
            target=command.target,
            args=command.args,
        )
        result = await self._dispatch(command, idc, request.model_dump_json())
        metrics.IDC_RESULTS.labels(idc, result.status).inc()
        await self._publish(result)

    async def _dispatch(self, command: Command, idc: str, request_json: str) -> CommandResult:
        started = time.monotonic()
        outcome = await self._outcome(idc, request_json)
        return CommandResult.about(
            command,
            stage="result",
            idc=idc,
            duration_ms=(time.monotonic() - started) * 1000,
            status=outcome.status,
            reason=outcome.reason,
            detail=outcome.detail,
            master=outcome.master,
            minions=outcome.minions,
        )

    async def _outcome(self, idc: str, request_json: str) -> IdcOutcome:
        """The IDC's result set, or why there is none: every outcome is a result."""
        timeout = self._config.timeout_s
        try:
            reply = await asyncio.wait_for(self._idcs[idc].dispatch(request_json), timeout)
        except TimeoutError:
            return IdcOutcome("timeout", "timeout", f"no result set within {timeout:g} s")
        except MasterUnavailable as error:
            return IdcOutcome("failed", "unreachable", str(error))
        reason = "" if reply.status == "succeeded" else "failed"
        return IdcOutcome(reply.status, reason, reply.reason, reply.master, reply.minions)

    async def _publish(self, result: CommandResult) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self._config.results_topic,
            key=result.command_id.encode(),
            value=result.model_dump_json().encode(),
        )

    async def run(self) -> None:
        config = self._config
        consumer = AIOKafkaConsumer(
            config.commands_topic,
            bootstrap_servers=config.bootstrap,
            group_id=config.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
            session_timeout_ms=config.timings.session_ms,
            heartbeat_interval_ms=config.timings.heartbeat_ms,
        )
        recalled = await recall_admitted(config.bootstrap, config.results_topic, self._admission.seen)
        log.info("recalled %d unexpired admitted commands", recalled)
        self._producer = AIOKafkaProducer(bootstrap_servers=config.bootstrap, linger_ms=0)
        await self._producer.start()
        await consumer.start()
        try:
            await self._consume(consumer)
        finally:
            await consumer.stop()
            await self._producer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        tracker = CommitTracker()
        slots = asyncio.Semaphore(_MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for partition, records in batches.items():
                for record in records:
                    await slots.acquire()
                    tracker.started(partition, record.offset)
                    task = asyncio.create_task(self._handle_record(record))
                    tasks.add(task)
                    task.add_done_callback(_finish(tasks, tracker, slots, partition, record.offset))
            metrics.IN_FLIGHT.set(len(tasks))
            positions = tracker.committable()
            if positions:
                await consumer.commit(positions)

    async def _handle_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            await self.handle(record.value or b"")
        except Exception:  # one bad command must not stop the service; it is logged and counted
            log.exception("command at offset %s failed", record.offset)
            metrics.COMMANDS.labels("error", "internal").inc()


def _finish(
    tasks: set[asyncio.Task[None]],
    tracker: CommitTracker,
    slots: asyncio.Semaphore,
    partition: TopicPartition,
    offset: int,
) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        tracker.finished(partition, offset)
        slots.release()

    return done


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
        )
        for idc, addresses in config.masters.items()
    }


async def serve(config: ControlConfig) -> None:
    """Run the control service until cancelled."""
    admission = Admission(
        policy=load_policy(config.policy_file),
        operators=load_registry(config.operators_file),
        idcs=set(config.masters),
        max_lifetime=datetime.timedelta(seconds=config.max_lifetime_s),
    )
    workers = config.idc_concurrency * max(1, len(config.masters))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpyc") as pool:
        idcs = build_idcs(config, pool)
        try:
            await ControlService(config, admission, idcs).run()
        finally:
            for idc in idcs.values():
                idc.close()
