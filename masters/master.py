"""A master: validates a request, maps it to Salt through its module, runs it once per `command_id`."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

import yaml
from pydantic import ValidationError

from masters import metrics
from masters.executors import Executor
from masters.modules import Allowed, ModuleRejected, salt_call
from masters.protocol import MasterReply, MasterRequest

ALLOWLIST_FILE = Path(__file__).parent / "salt" / "allowlist.yaml"


def load_allowed(path: Path, idc: str) -> Allowed:
    sections = yaml.safe_load(path.read_text()) or {}
    section = sections.get(idc, sections.get("default", {})) or {}
    commands = {name: [str(part) for part in argv] for name, argv in section.get("commands", {}).items()}
    return Allowed(commands=commands, states=frozenset(section.get("states", [])))


class Master:
    """Idempotent by `command_id`: a retried dispatch gets the first run's reply, never a second run."""

    def __init__(
        self,
        name: str,
        idc: str,
        executor: Executor,
        allowed: Allowed,
        timeout: float,
        remember: int = 10_000,
    ) -> None:
        self.name = name
        self.idc = idc
        self._executor = executor
        self._allowed = allowed
        self._timeout = timeout
        self._remember = remember
        self._replies: OrderedDict[str, str] = OrderedDict()
        self._running: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def execute(self, request_json: str) -> str:
        try:
            request = MasterRequest.model_validate_json(request_json)
        except ValidationError as error:
            return self.failure(f"malformed request: {error.errors()[0]['msg']}").model_dump_json()
        with self._guard:
            lock = self._running.setdefault(request.command_id, threading.Lock())
        with lock:  # a concurrent duplicate waits for the first run, then reads its reply
            reply = self._replies.get(request.command_id)
            if reply is None:
                reply = self._run(request).model_dump_json()
                self._remember_reply(request.command_id, reply)
        with self._guard:
            self._running.pop(request.command_id, None)
        return reply

    def _remember_reply(self, command_id: str, reply: str) -> None:
        with self._guard:
            self._replies[command_id] = reply
            while len(self._replies) > self._remember:
                self._replies.popitem(last=False)

    def _run(self, request: MasterRequest) -> MasterReply:
        started = time.perf_counter()
        if request.idc != self.idc:
            return self.failure(f"wrong idc: this master serves {self.idc}")
        try:
            call = salt_call(request.module, request.args, self._allowed)
        except ModuleRejected as error:
            return self.failure(str(error))
        minions = self._executor.run(call, request.target, self._timeout)
        failed = sorted(minion for minion, ret in minions.items() if not ret.ok)
        status = "succeeded" if minions and not failed else "failed"
        reason = "no minion matched the target" if not minions else _failed_minions(failed, len(minions))
        metrics.EXECUTIONS.labels(request.module, status).inc()
        duration = (time.perf_counter() - started) * 1000
        return MasterReply(
            status=status, reason=reason, master=self.name, minions=minions, duration_ms=duration
        )

    def failure(self, reason: str) -> MasterReply:
        """A request this master refuses to run, and why."""
        return MasterReply(status="failed", reason=reason, master=self.name)


def _failed_minions(failed: list[str], total: int) -> str:
    return f"{len(failed)} of {total} minions failed: {', '.join(failed[:5])}" if failed else ""
