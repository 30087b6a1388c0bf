"""A master: verifies each command itself, maps it to Salt through its module, runs it at most once.

Being reached by the control service's identity is not enough to run anything: the request carries the
operator's signed command, and the master checks the signature against the operator registry, the
expiry, that the command names this master's IDC, the module's argument schema and the IDC's
allow-list. What it starts is claimed durably first in the IDC's ledger, which every master of the
IDC consults (`ClaimLedger`), so no retry, restart or failover runs a command a second time in the IDC.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from masters import metrics
from masters.executors import Executor, Expired
from masters.keys import verify
from masters.memory import STARTED, ClaimLedger, Executed
from masters.modules import Allowed, ModuleRejected, SaltCall, salt_call
from masters.protocol import (
    MAX_BATCH,
    MAX_COMMAND_BYTES,
    Command,
    CommandRejected,
    MasterReply,
    MasterRequest,
    bounded_outputs,
    check_times,
    first_error,
)

ALLOWLIST_FILE = Path(__file__).parent / "salt" / "allowlist.yaml"
# The request wraps one command: its limit, and room for the envelope.
_MAX_REQUEST_CHARS = MAX_COMMAND_BYTES + 1024


def load_allowed(path: Path, idc: str) -> Allowed:
    sections = yaml.safe_load(path.read_text()) or {}
    section = sections.get(idc, sections.get("default", {})) or {}
    commands = {name: [str(part) for part in argv] for name, argv in section.get("commands", {}).items()}
    return Allowed(commands=commands, states=frozenset(section.get("states", [])))


class Master:
    """Idempotent by `command_id`: a retried dispatch gets the first run's reply, never a second run;
    a command another master of the IDC claimed is refused (`already_run`)."""

    def __init__(
        self,
        name: str,
        idc: str,
        executor: Executor,
        allowed: Allowed,
        operators: dict[str, Ed25519PublicKey],
        memory: ClaimLedger,
        timeout: float,
        max_lifetime: datetime.timedelta,
        remember: int = 10_000,
    ) -> None:
        self.name = name
        self.idc = idc
        self._executor = executor
        self._allowed = allowed
        self._operators = operators
        self._memory = memory
        self._timeout = timeout
        self._max_lifetime = max_lifetime
        self._remember = remember
        self._replies: OrderedDict[str, str] = OrderedDict()
        self._running: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=MAX_BATCH, thread_name_prefix="salt")

    def execute_many(self, requests: list[str]) -> list[str]:
        """A reply per request, in order. The batch's new commands are claimed under one lock with
        one fsync (what makes a batch cheaper than its requests one by one), then run side by side:
        the reply comes when the slowest is done. A command already answered gets that answer again."""
        replies: dict[int, str] = {}
        admitted: dict[str, tuple[Command, SaltCall]] = {}
        asked: dict[int, str] = {}  # position in the batch -> command id
        for position, request in enumerate(requests):
            try:
                command = _parse(request)
                call = self._admit(command)
            except CommandRejected as error:
                metrics.REFUSALS.labels(error.reason).inc()
                replies[position] = self.refusal(error.reason, str(error)).model_dump_json()
                continue
            asked[position] = str(command.command_id)
            admitted.setdefault(asked[position], (command, call))
        with self._running_alone(sorted(admitted)):
            answers = self._answer(admitted)
        replies |= {position: answers[command_id] for position, command_id in asked.items()}
        return [replies[position] for position in range(len(requests))]

    @contextmanager
    def _running_alone(self, command_ids: list[str]) -> Iterator[None]:
        """Hold each command's lock, taken in id order (so two batches cannot wait on each other): a
        concurrent duplicate waits for the first run, then reads its reply."""
        with self._guard:
            locks = [self._running.setdefault(command_id, threading.Lock()) for command_id in command_ids]
        try:
            with ExitStack() as held:
                for lock in locks:
                    held.enter_context(lock)
                yield
        finally:
            with self._guard:
                for command_id in command_ids:
                    self._running.pop(command_id, None)

    def _answer(self, admitted: dict[str, tuple[Command, SaltCall]]) -> dict[str, str]:
        answers = {
            command_id: self._replies[command_id] for command_id in admitted if command_id in self._replies
        }
        fresh = [command_id for command_id in admitted if command_id not in answers]
        claimed = self._memory.claim_many(
            [(command_id, admitted[command_id][0].expires_at) for command_id in fresh]
        )
        runs = {}
        for command_id, known in zip(fresh, claimed, strict=True):
            if known is not None:
                metrics.REFUSALS.labels("already_run").inc()
                answers[command_id] = self.refusal("already_run", _already_run(known)).model_dump_json()
                self._remember_reply(command_id, answers[command_id])
            else:
                runs[command_id] = admitted[command_id]
        outcomes = self._run_claimed(runs)
        self._memory.finish([(command_id, outcome) for command_id, (_, outcome) in outcomes.items()])
        for command_id, (reply, _) in outcomes.items():
            answers[command_id] = reply.model_dump_json()
            self._remember_reply(command_id, answers[command_id])
        return answers

    def _run_claimed(self, runs: dict[str, tuple[Command, SaltCall]]) -> dict[str, tuple[MasterReply, str]]:
        if len(runs) <= 1:
            return {command_id: self._run(*run) for command_id, run in runs.items()}
        futures = {command_id: self._pool.submit(self._run, *run) for command_id, run in runs.items()}
        return {command_id: future.result() for command_id, future in futures.items()}

    def _admit(self, command: Command) -> SaltCall:
        """The command's Salt call, if this master may run it; raises CommandRejected otherwise."""
        verify(command, self._operators)
        check_times(command, datetime.datetime.now(datetime.UTC), self._max_lifetime)
        if self.idc not in command.idc:
            raise CommandRejected(
                "wrong_idc", f"this master serves {self.idc}; the command names {', '.join(command.idc)}"
            )
        try:
            return salt_call(command.module, command.args, self._allowed)
        except ModuleRejected as error:
            raise CommandRejected(error.reason, str(error)) from None

    def _run(self, command: Command, call: SaltCall) -> tuple[MasterReply, str]:
        """Run a command this master has claimed: its reply, and its outcome for the ledger."""
        started = time.perf_counter()
        try:
            minions = self._executor.run(call, command.target, self._timeout, command.expires_at)
        except Expired as error:
            metrics.REFUSALS.labels("expired").inc()
            return self.refusal("expired", str(error)), "refused"
        except Exception as error:  # Salt's client fails too (no salt-master, say): still one answer
            metrics.EXECUTIONS.labels(command.module, "failed").inc()
            detail = f"Salt failed: {type(error).__name__}: {error}"
            return MasterReply(
                status="failed", reason="salt_error", detail=detail, master=self.name
            ), "failed"
        failed = sorted(minion for minion, ret in minions.items() if not ret.ok)
        status = "succeeded" if minions and not failed else "failed"
        detail = "no minion matched the target" if not minions else _failed_minions(failed, len(minions))
        kept, truncated, omitted = bounded_outputs(minions)
        if omitted:
            detail = f"{detail}; " if detail else ""
            detail += (
                f"{len(minions)} minions answered, {omitted} of their returns left out to fit the result"
            )
        metrics.EXECUTIONS.labels(command.module, status).inc()
        reply = MasterReply(
            status=status,
            reason="" if status == "succeeded" else "failed",
            detail=detail,
            master=self.name,
            minions=kept,
            duration_ms=(time.perf_counter() - started) * 1000,
            truncated=truncated,
            omitted=omitted,
        )
        return reply, status

    def _remember_reply(self, command_id: str, reply: str) -> None:
        with self._guard:
            self._replies[command_id] = reply
            while len(self._replies) > self._remember:
                self._replies.popitem(last=False)

    def refusal(self, reason: str, detail: str) -> MasterReply:
        """A request this master does not run, and why."""
        return MasterReply(status="refused", reason=reason, detail=detail, master=self.name)


def _parse(request_json: str) -> Command:
    if len(request_json) > _MAX_REQUEST_CHARS:
        raise CommandRejected("too_large", f"a request is at most {_MAX_REQUEST_CHARS} characters")
    try:
        return MasterRequest.model_validate_json(request_json).command
    except ValidationError as error:
        raise CommandRejected("malformed", f"malformed request: {first_error(error)}") from None


def _already_run(known: Executed) -> str:
    by = f"master {known.master} of this IDC" if known.master else "a master of this IDC"
    if known.status == STARTED:
        return f"{by} started it; whether it finished is unknown"
    return f"{by} ran it before (outcome: {known.status})"


def _failed_minions(failed: list[str], total: int) -> str:
    minions = "minion" if total == 1 else "minions"
    return f"{len(failed)} of {total} {minions} failed: {', '.join(failed[:5])}" if failed else ""
