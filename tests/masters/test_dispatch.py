"""Timeouts and broken connections tell the truth: `timeout` only when a command cannot have run,
`unknown` when it may have, a master never starts a command after it expired, and a command that
reached one master is never sent to another."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control.admitted import AdmittedCommands
from control.client import OpsClient, publish
from control.dispatch import Attempt, Idc, MasterAddress, ReplyLost
from control.pki import Pki
from control.policy import Policy, Role
from control.results import CommandResult
from control.service import Admission, ControlService
from masters.executors import CallerExecutor
from masters.modules import Allowed, SaltCall
from masters.protocol import MasterReply, MasterRequest, MinionReturn, Target
from omstream.services import control_config, ops_topics
from omstream.settings import Settings
from tests.masters.conftest import (
    MAX_LIFETIME,
    OPERATOR,
    OPERATORS,
    ServeMaster,
    call,
    command,
    control_client,
    request,
    signed,
)
from tests.masters.test_transport import CountingExecutor


class SlowExecutor:
    """The real masterless executor, after a pause longer than the control service waits."""

    def __init__(self, inner: CallerExecutor, pause: float) -> None:
        self.inner, self.pause, self.runs = inner, pause, 0

    def run(
        self, call: SaltCall, target: Target, timeout: float, not_after: datetime.datetime
    ) -> dict[str, MinionReturn]:
        time.sleep(self.pause)
        self.runs += 1
        return self.inner.run(call, target, timeout, not_after)


def admission() -> Admission:
    admin = Role(modules=["*"], idcs=["*"], targets=["*"])
    return Admission(
        Policy(roles={"admin": admin}, operators={OPERATOR: ["admin"]}),
        OPERATORS,
        {"bj"},
        MAX_LIFETIME,
        AdmittedCommands(MAX_LIFETIME),
    )


@pytest.mark.integration
def test_a_master_slower_than_the_timeout_gives_an_unknown_result_not_a_timeout(
    bootstrap: str, settings: Settings, pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    """Issue row 9: the result said `timeout`, which reads "did not run", while the master ran it."""
    settings = settings.model_copy(update={"ops_timeout_s": 0.5})
    slow_executor = SlowExecutor(caller, pause=2.0)
    slow = control_client(pki, serve_master(slow_executor))

    async def scenario() -> list[CommandResult]:
        with ThreadPoolExecutor(4) as pool:
            config = control_config(
                settings.model_copy(update={"masters": {"bj": ["bj-1@127.0.0.1:1"]}}), bootstrap
            )
            idcs = {"bj": Idc("bj", [slow], 4, pool, 4)}
            service = ControlService(config, admission(), idcs, Ed25519PrivateKey.generate())
            running = asyncio.create_task(service.run())
            ping = signed(command())
            results: list[CommandResult] = []
            try:
                async with OpsClient(bootstrap, ops_topics(settings)) as follower:
                    await publish(bootstrap, settings.ops_commands_topic, [ping])
                    async with asyncio.timeout(30):
                        async for result in follower.results():
                            results.append(result)
                            if result.stage == "result":
                                return results
            finally:
                running.cancel()
        return results

    results = asyncio.run(scenario())
    assert [(r.stage, r.status) for r in results] == [("received", "accepted"), ("result", "unknown")]
    assert results[1].reason == "no_reply" and "may have run" in results[1].detail
    assert 500 <= results[1].duration_ms < 5000
    deadline = time.monotonic() + 10
    while slow_executor.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slow_executor.runs == 1  # it did run: `timeout` would have been a lie


def test_a_command_that_expires_while_it_waits_for_salt_is_not_started(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    address = serve_master(caller, allowed=Allowed(commands={"slow": ["sleep", "2"]}))
    busy = threading.Thread(
        target=call, args=(control_client(pki, address), request("cmd_allowlisted", args={"name": "slow"}))
    )
    busy.start()  # holds masterless Salt (one call at a time) for two seconds
    time.sleep(0.3)
    now = datetime.datetime.now(datetime.UTC)
    short_lived = request(issued_at=now, expires_at=now + datetime.timedelta(seconds=1))
    reply = MasterReply.model_validate_json(call(control_client(pki, address), short_lived))
    busy.join()
    assert (reply.status, reply.reason, reply.minions) == ("refused", "expired", {})
    assert "before Salt could start it" in reply.detail


class Link:
    """A TCP link between the control service and a master that the network can cut: it forwards
    bytes both ways (TLS runs end to end through it) until `cut`."""

    def __init__(self, master: MasterAddress) -> None:
        self._master = master
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self.address = MasterAddress(master.name, "127.0.0.1", self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._listener.accept()
            except OSError:  # the link was closed
                return
            far = socket.create_connection((self._master.host, self._master.port))
            self._sockets += [near, far]
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.cut()
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)


class DroppingExecutor(CountingExecutor):
    """Runs the command, and the network fails before the reply goes back."""

    def __init__(self, inner: CallerExecutor, drop: Callable[[], None]) -> None:
        super().__init__(inner)
        self.drop = drop

    def run(
        self, call: SaltCall, target: Target, timeout: float, not_after: datetime.datetime
    ) -> dict[str, MinionReturn]:
        returns = super().run(call, target, timeout, not_after)
        self.drop()
        return returns


def test_a_dropped_connection_after_sending_is_unknown_and_no_other_master_runs_it(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    """Issue row 9: failover after a dropped connection ran the command on a second master."""
    ping = signed(command())
    command_id = str(ping.command_id)
    names = ["bj-1", "bj-2"]
    with ThreadPoolExecutor(4) as pool:
        probe = Idc("bj", [control_client(pki, serve_master(caller, name=n)) for n in names], 4, pool, 4)
        first = probe.in_order(command_id)[0].address.name  # the master this command goes to first
        for name in names:
            serve_master.stop(name)
        links: list[Link] = []
        dropping = DroppingExecutor(caller, lambda: links[0].cut())
        other = CountingExecutor(caller)
        links.append(Link(serve_master(dropping, name=first)))
        clients = [
            control_client(pki, links[0].address if name == first else serve_master(other, name=name))
            for name in names
        ]
        idc = Idc("bj", clients, 4, pool, 4)

        async def dispatch() -> MasterReply:
            return await idc.dispatch(command_id, MasterRequest(command=ping).model_dump_json(), Attempt())

        with pytest.raises(ReplyLost, match="no reply after the request was sent"):
            asyncio.run(dispatch())
        links[0].close()
    assert (dropping.runs, other.runs) == (1, 0)
