"""The master transport: rpyc over mutual TLS, one exposed call, idempotent by command_id."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import rpyc
from rpyc.core.stream import SocketStream

from control.dispatch import MasterAddress, MasterUnavailable, connect
from control.pki import CONTROL_CLIENT, Pki
from masters.executors import CallerExecutor
from masters.modules import SaltCall
from masters.protocol import RPYC_CONFIG, MasterReply, MinionReturn, Target
from masters.tls import client_context
from tests.masters.conftest import MINION_ID, ServeMaster, control_client, tmp_pki

REFUSED = (ssl.SSLError, EOFError, ConnectionError, OSError)


def request(module: str = "ping", command_id: str = "c-1", **fields: Any) -> str:
    return json.dumps(
        {"command_id": command_id, "idc": "bj", "module": module, "target": "*", "args": {}} | fields
    )


def test_a_ping_over_mutual_tls(pki: Pki, caller: CallerExecutor, serve_master: ServeMaster) -> None:
    client = control_client(pki, serve_master(caller))
    reply = MasterReply.model_validate_json(client.call(request()))
    assert (reply.status, reply.master) == ("succeeded", "bj-1")
    assert reply.minions == {MINION_ID: MinionReturn(ok=True, output=True)}
    client.close()


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
        control_client(pki, impostor_expected).call(request())


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
    ):
        with pytest.raises(AttributeError):
            reach()
    live_object = connection.root  # a netref instead of a JSON string is refused without calling it
    assert "JSON string" in MasterReply.model_validate_json(root.execute(live_object)).reason
    connection.close()


class CountingExecutor:
    """The real masterless executor, counting how often Salt actually runs."""

    def __init__(self, inner: CallerExecutor) -> None:
        self.inner, self.runs, self._lock = inner, 0, threading.Lock()

    def run(self, call: SaltCall, target: Target, timeout: float) -> dict[str, MinionReturn]:
        with self._lock:
            self.runs += 1
        return self.inner.run(call, target, timeout)


def test_a_retried_dispatch_does_not_run_twice(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    executor = CountingExecutor(caller)
    address = serve_master(executor)
    first, second = control_client(pki, address), control_client(pki, address)
    duplicate = request("cmd_allowlisted", "c-dup", args={"name": "hostname"})
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda c: c.call(duplicate), [first, second, first, second]))
    assert executor.runs == 1 and len(set(replies)) == 1
    assert MasterReply.model_validate_json(replies[0]).status == "succeeded"
    first.call(request("ping", "c-other"))
    assert executor.runs == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{", "malformed request"),
        (request(idc="sh"), "wrong idc"),
        (request("reboot"), "unknown module"),
        (request("cmd_allowlisted", args={"name": "rm"}), "not on this IDC's allow-list"),
        (request("state_apply", args={"state": "top"}), "not on this IDC's allow-list"),
        (request("service", args={"name": "a;b"}), "bad args for service"),
        (request(target="no-such-host-*"), "no minion matched"),
    ],
)
def test_a_master_checks_again_what_it_is_asked(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster, body: str, reason: str
) -> None:
    reply = MasterReply.model_validate_json(control_client(pki, serve_master(caller)).call(body))
    assert reply.status == "failed" and reason in reply.reason
