"""The master transport: rpyc over mutual TLS with the control service's identity only, one exposed
call, a command verified by the master itself, and run at most once per command_id."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import rpyc
from prometheus_client import REGISTRY
from rpyc.core.stream import SocketStream

from control.dispatch import MasterAddress, MasterUnavailable, connect
from control.pki import CONTROL_CLIENT, Pki, issue
from masters.executors import CallerExecutor
from masters.modules import SaltCall
from masters.protocol import RPYC_CONFIG, Command, MasterReply, MasterRequest, MinionReturn, Target
from masters.tls import client_context
from tests.masters.conftest import (
    MINION_ID,
    TAMPERINGS,
    ServeMaster,
    call,
    command,
    control_client,
    request,
    signed,
    tmp_pki,
)

REFUSED = (ssl.SSLError, EOFError, ConnectionError, OSError)


def reply_to(pki: Pki, address: MasterAddress, request_json: str) -> MasterReply:
    client = control_client(pki, address)
    try:
        return MasterReply.model_validate_json(call(client, request_json))
    finally:
        client.close()


def test_a_ping_over_mutual_tls(pki: Pki, caller: CallerExecutor, serve_master: ServeMaster) -> None:
    reply = reply_to(pki, serve_master(caller), request())
    assert (reply.status, reply.master) == ("succeeded", "bj-1")
    assert reply.minions == {MINION_ID: MinionReturn(ok=True, output=True)}


def test_the_control_service_reuses_its_connection_to_a_master(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    """Every call opened a new TLS connection: rpyc's own messages after a reply made an idle
    connection look closed (issue 21, throughput)."""
    client = control_client(pki, serve_master(caller))
    before = REGISTRY.get_sample_value("omstream_master_authenticated_total") or 0.0
    try:
        for _ in range(10):
            assert MasterReply.model_validate_json(call(client, request())).status == "succeeded"
    finally:
        client.close()
    assert (REGISTRY.get_sample_value("omstream_master_authenticated_total") or 0.0) - before == 1


def test_a_client_without_a_certificate_is_refused(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    address = serve_master(caller)
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(pki.ca_cert)
    with pytest.raises(REFUSED):
        connect(address, anonymous, 2, 5).root.execute(request())


def test_a_certificate_from_another_ca_is_refused(
    pki: Pki, tmp_path: Path, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    address = serve_master(caller)
    stranger = client_context(tmp_pki(tmp_path / "other-ca", ["bj-1"]).files(CONTROL_CLIENT))
    stranger.load_verify_locations(pki.ca_cert)  # it trusts our master; only its own certificate is foreign
    with pytest.raises(REFUSED):
        connect(address, stranger, 2, 5).root.execute(request())


def test_a_client_certificate_of_our_ca_that_is_not_the_control_service_runs_nothing(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    """Issue row 1: any certificate the CA ever signed used to be enough to run `ping`."""
    issue(pki, "mallory", server=False)
    address = serve_master(caller)
    with pytest.raises(REFUSED):
        connect(address, client_context(pki.files("mallory")), 2, 5).root.execute(request())


def test_a_server_certificate_used_as_a_client_certificate_is_refused(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    address = serve_master(caller)
    with pytest.raises(REFUSED):
        connect(address, client_context(pki.files("bj-2")), 2, 5).root.execute(request())


def test_tls_below_1_2_is_refused(pki: Pki, caller: CallerExecutor, serve_master: ServeMaster) -> None:
    address = serve_master(caller)
    old = client_context(pki.files(CONTROL_CLIENT))
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # what an old client would offer
    with pytest.raises(REFUSED):
        connect(address, old, 2, 5).root.execute(request())


def test_plaintext_rpyc_is_refused(caller: CallerExecutor, serve_master: ServeMaster) -> None:
    address = serve_master(caller)
    sock = socket.create_connection((address.host, address.port), timeout=5)
    with pytest.raises(REFUSED):
        rpyc.utils.factory.connect_stream(SocketStream(sock), config=RPYC_CONFIG).root.execute(request())


def test_the_client_verifies_the_master_name(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    address = serve_master(caller)
    impostor_expected = MasterAddress(name="bj-2", host=address.host, port=address.port)
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        connect(impostor_expected, client_context(pki.files(CONTROL_CLIENT)), 2, 5)
    with pytest.raises(MasterUnavailable):
        call(control_client(pki, impostor_expected), request())


def test_nothing_but_the_one_call_is_reachable(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    connection = connect(serve_master(caller), client_context(pki.files(CONTROL_CLIENT)), 2, 5)
    root = connection.root
    for reach in (
        lambda: connection.modules.os.system("true"),
        lambda: root._master,
        lambda: root.execute.__globals__,
        lambda: root.execute.__func__,
        lambda: root.__dict__,
        lambda: root._conn,
        lambda: root.exposed_execute.__self__._master,
        # public names that are not exposed: reachable only if public attributes were allowed
        lambda: root.on_connect,
        lambda: root.on_disconnect,
    ):
        with pytest.raises(AttributeError):
            reach()
    live_object = connection.root  # a netref instead of a JSON string is refused without calling it
    assert "JSON string" in MasterReply.model_validate_json(root.execute(live_object)).detail
    connection.close()


class CountingExecutor:
    """The real masterless executor, counting how often Salt actually runs."""

    def __init__(self, inner: CallerExecutor) -> None:
        self.inner, self.runs, self._lock = inner, 0, threading.Lock()

    def run(
        self, call: SaltCall, target: Target, timeout: float, not_after: datetime.datetime
    ) -> dict[str, MinionReturn]:
        with self._lock:
            self.runs += 1
        return self.inner.run(call, target, timeout, not_after)


def test_a_retried_dispatch_does_not_run_twice(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    executor = CountingExecutor(caller)
    address = serve_master(executor)
    first, second = control_client(pki, address), control_client(pki, address)
    duplicate = request("cmd_allowlisted", args={"name": "hostname"})
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda c: call(c, duplicate), [first, second, first, second]))
    assert executor.runs == 1 and len(set(replies)) == 1
    assert MasterReply.model_validate_json(replies[0]).status == "succeeded"
    call(first, request("ping"))
    assert executor.runs == 2


def test_a_restarted_master_does_not_run_a_command_again(
    pki: Pki, tmp_path: Path, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    executor = CountingExecutor(caller)
    ledger = tmp_path / "ledger-bj"
    once = request("cmd_allowlisted", args={"name": "hostname"})
    assert reply_to(pki, serve_master(executor, ledger=ledger), once).status == "succeeded"
    serve_master.stop("bj-1")
    again = reply_to(pki, serve_master(executor, ledger=ledger), once)  # a new process, the same disk
    assert (again.status, again.reason) == ("refused", "already_run")
    assert "master bj-1 of this IDC ran it before (outcome: succeeded)" in again.detail
    assert executor.runs == 1


def test_the_masters_of_an_idc_run_a_command_once_between_them(
    pki: Pki, tmp_path: Path, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    """Issue 21, row 1: each master kept its own memory, so a failover to the IDC's second master ran a
    command the first had run. Both masters here are sent the same commands at once, many times."""
    executor = CountingExecutor(caller)
    ledger = tmp_path / "ledger-bj"
    masters = [serve_master(executor, name, ledger=ledger) for name in ("bj-1", "bj-2")]
    clients = [control_client(pki, address) for address in masters for _ in range(3)]
    commands = [request("cmd_allowlisted", args={"name": "hostname"}) for _ in range(8)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            for once in commands:
                replies = [
                    MasterReply.model_validate_json(reply)
                    for reply in pool.map(call, clients, [once] * len(clients))
                ]
                ran = [reply for reply in replies if reply.status == "succeeded"]
                refused = [reply for reply in replies if reply.reason == "already_run"]
                assert len({reply.master for reply in ran}) == 1  # the master that ran it, and its
                assert len(ran) + len(refused) == len(clients)  # cached reply; the other refuses
    finally:
        for client in clients:
            client.close()
    assert executor.runs == len(commands)


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
def test_a_stolen_control_identity_cannot_run_a_tampered_command(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster, field: str
) -> None:
    """The control service's certificate alone runs nothing: each signed field is checked again."""
    executor = CountingExecutor(caller)
    tampered = signed(command()).model_copy(update={field: TAMPERINGS[field]})
    reply = reply_to(pki, serve_master(executor), MasterRequest(command=tampered).model_dump_json())
    assert (reply.status, reply.reason) == ("refused", "bad_signature")
    assert executor.runs == 0


def test_every_signed_field_is_tampered_with() -> None:
    assert set(TAMPERINGS) == set(Command.model_fields) - {"signature"}


def now_plus(seconds: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{", "malformed"),
        ('{"command": {"command_id": "x"}}', "malformed"),
        ("[" * 100_000 + "]" * 100_000, "too_large"),
        ("[" * 30_000 + "]" * 30_000, "malformed"),
        (MasterRequest(command=command()).model_dump_json(), "unsigned"),
        (request(operator="nobody"), "unknown_operator"),
        (request(issued_at=now_plus(-600), expires_at=now_plus(-1)), "expired"),
        (request(issued_at=now_plus(-60), expires_at=now_plus(2 * 3600)), "lifetime_too_long"),
        (request(idc=["sh"]), "wrong_idc"),
        (request("reboot"), "unknown_module"),
        (request("cmd_allowlisted", args={"name": "rm"}), "not_allowed"),
        (request("state_apply", args={"state": "top"}), "not_allowed"),
        (request("service", args={"name": "a;b"}), "bad_args"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None,
)
def test_a_master_refuses_what_it_may_not_run(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster, body: str, reason: str
) -> None:
    executor = CountingExecutor(caller)
    reply = reply_to(pki, serve_master(executor), body)
    assert (reply.status, reply.reason) == ("refused", reason), reply.detail
    assert executor.runs == 0


def test_a_target_no_minion_matches_fails(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    reply = reply_to(pki, serve_master(caller), request(target="no-such-host-*"))
    assert (reply.status, reply.detail) == ("failed", "no minion matched the target")


def test_unauthenticated_connections_cannot_pile_up_threads(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    address = serve_master(caller, max_handshakes=4)
    threads = threading.active_count()
    idle: list[socket.socket] = []
    try:
        for _ in range(50):  # connect, never say a word
            idle.append(socket.create_connection((address.host, address.port), timeout=5))
        time.sleep(0.5)  # the server accepts them
        assert threading.active_count() - threads <= 4
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 30  # the handshakes waiting on those sockets end as they close
    while True:
        try:
            assert reply_to(pki, address, request()).status == "succeeded"
            return
        except MasterUnavailable:
            if time.monotonic() > deadline:
                raise


def idle_connections(address: MasterAddress, source: str, count: int) -> list[socket.socket]:
    """`count` TCP connections from the loopback address `source` that never say a word (no
    certificate needed); refused ones are dropped."""
    idle = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.connect((address.host, address.port))
        idle.append(sock)
    return idle


def test_one_address_holding_every_handshake_slot_does_not_shut_the_control_service_out(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    """Issue 21, row 5: 32 idle connections from anywhere took every handshake slot, and the IDC
    answered `failed/unreachable`. Measured: with 200 idle connections from 127.0.0.2 held open, the
    control service (127.0.0.1) still gets through, and the attacker's address holds at most its share."""
    address = serve_master(caller, max_handshakes=64, max_handshakes_per_peer=8, handshake_burst=300)
    threads = threading.active_count()
    idle = idle_connections(address, "127.0.0.2", 200)
    try:
        time.sleep(0.5)
        held = threading.active_count() - threads
        started = time.perf_counter()
        assert reply_to(pki, address, request()).status == "succeeded"
        took = time.perf_counter() - started
    finally:
        for sock in idle:
            sock.close()
    print(f"handshake threads held by one address: {held}; a ping meanwhile took {took * 1000:.0f} ms")
    assert held <= 8


def test_one_address_reconnecting_fast_is_refused_beyond_its_rate(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    address = serve_master(caller, max_handshakes_per_peer=1000, handshakes_per_s=5, handshake_burst=10)
    threads = threading.active_count()
    idle = idle_connections(address, "127.0.0.2", 100)
    try:
        time.sleep(0.5)
        assert threading.active_count() - threads <= 11  # the burst, and what the rate let in since
        assert reply_to(pki, address, request()).status == "succeeded"  # another address: its own bucket
    finally:
        for sock in idle:
            sock.close()


def test_a_request_names_a_command_by_its_uuid_whatever_its_spelling(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    executor = CountingExecutor(caller)
    address = serve_master(executor)
    first = signed(command(command_id=uuid.uuid4()))
    assert reply_to(pki, address, MasterRequest(command=first).model_dump_json()).status == "succeeded"
    body: dict[str, Any] = MasterRequest(command=first).model_dump(mode="json")
    body["command"]["command_id"] = first.command_id.hex.upper()  # the same id, written otherwise
    assert reply_to(pki, address, json.dumps(body)).status == "succeeded"  # the first run's reply
    assert executor.runs == 1


class BrokenExecutor:
    """Salt's client failing as a whole (its salt-master gone, say)."""

    def run(
        self, call: SaltCall, target: Target, timeout: float, not_after: datetime.datetime
    ) -> dict[str, MinionReturn]:
        raise RuntimeError("the salt-master is gone")


def test_a_salt_failure_is_a_failed_result_not_a_broken_call(pki: Pki, serve_master: ServeMaster) -> None:
    reply = reply_to(pki, serve_master(BrokenExecutor()), request())
    assert (reply.status, reply.reason) == ("failed", "salt_error")
    assert "the salt-master is gone" in reply.detail
