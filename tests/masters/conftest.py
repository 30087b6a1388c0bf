"""Masters for tests: a private CA, an operator's key, and real masters (rpyc over mutual TLS) served
from threads."""

from __future__ import annotations

import datetime
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control.dispatch import Attempt, MasterAddress, MasterClient
from control.pki import CONTROL_CLIENT, Pki, ensure_pki
from masters.executors import CallerExecutor, Executor, write_minion_config
from masters.keys import sign
from masters.master import ALLOWLIST_FILE, Master, load_allowed
from masters.memory import ClaimLedger
from masters.modules import Allowed
from masters.protocol import Command, MasterRequest
from masters.server import MasterConfig, MasterServer, build_server
from masters.tls import client_context
from omstream.embedded.stack import free_port

MINION_ID = socket.gethostname()
OPERATOR = "alice"
OPERATOR_KEY = Ed25519PrivateKey.generate()
OTHER_OPERATOR = "bob"
OPERATORS = {OPERATOR: OPERATOR_KEY.public_key(), OTHER_OPERATOR: Ed25519PrivateKey.generate().public_key()}
MAX_LIFETIME = datetime.timedelta(hours=1)


def command(module: str = "ping", **fields: Any) -> Command:
    """A command of `alice` for IDC bj (unsigned), valid for five minutes from now."""
    now = datetime.datetime.now(datetime.UTC)
    base: dict[str, Any] = {
        "command_id": uuid.uuid4(),
        "operator": OPERATOR,
        "idc": ["bj"],
        "target": "*",
        "module": module,
        "args": {},
        "issued_at": now,
        "expires_at": now + datetime.timedelta(minutes=5),
    }
    return Command.model_validate(base | fields)


# A change to each signed field, keeping the signature: each must void it (a new field of the command
# must be added here, see `test_every_signed_field_is_tampered_with`).
TAMPERINGS: dict[str, Any] = {
    "command_id": uuid.uuid4(),
    "operator": OTHER_OPERATOR,
    "idc": ["bj", "gz"],
    "target": "db*",
    "module": "grains",
    "args": {"keys": ["secret"]},
    "issued_at": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
    "expires_at": datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=6),
}


def signed(unsigned: Command) -> Command:
    return sign(unsigned, OPERATOR_KEY)


def request(module: str = "ping", **fields: Any) -> str:
    """What the control service sends a master: a signed command of `alice` for IDC bj."""
    return MasterRequest(command=signed(command(module, **fields))).model_dump_json()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    ensure_pki(pki, ["bj-1", "bj-2"])
    return pki


@pytest.fixture(scope="session")
def caller(tmp_path_factory: pytest.TempPathFactory) -> CallerExecutor:
    """Masterless Salt on this machine (loading Salt's modules takes a moment: once per session)."""
    return CallerExecutor(write_minion_config(tmp_path_factory.mktemp("minion"), MINION_ID))


class Masters:
    """Starts masters of IDC `bj` (`bj-1` unless named) around executors; stops them after the test.
    A master's IDC ledger is the directory `ledger` (by default one of its own)."""

    def __init__(self, pki: Pki, directory: Path) -> None:
        self._pki = pki
        self._directory = directory
        self._servers: dict[str, MasterServer] = {}
        self._memories: list[ClaimLedger] = []

    def __call__(
        self,
        executor: Executor,
        name: str = "bj-1",
        ledger: Path | None = None,
        allowed: Allowed | None = None,
        max_handshakes: int = 64,
        **gate: Any,
    ) -> MasterAddress:
        ledger_dir = ledger or self._directory / f"{name}-{len(self._memories)}"
        self._memories.append(ClaimLedger(ledger_dir, name))
        master = Master(
            name,
            "bj",
            executor,
            allowed or load_allowed(ALLOWLIST_FILE, "bj"),
            OPERATORS,
            self._memories[-1],
            10,
            MAX_LIFETIME,
        )
        config = MasterConfig(
            idc="bj",
            name=name,
            host="127.0.0.1",
            port=free_port(),
            tls=self._pki.files(name),
            client=CONTROL_CLIENT,
            operators_file=self._directory / "unused-operators.json",
            ledger_dir=ledger_dir,
            allowlist_file=ALLOWLIST_FILE,
            timeout_s=10,
            max_lifetime_s=int(MAX_LIFETIME.total_seconds()),
            salt_master_config=None,
            salt_dir=self._pki.directory / "salt",
            max_handshakes=max_handshakes,
            **gate,
        )
        server = build_server(master, config)
        threading.Thread(target=server.start, daemon=True).start()
        self._servers[name] = server
        while not server.active:  # listening starts in the thread
            time.sleep(0.01)
        return MasterAddress(name=name, host="127.0.0.1", port=server.port)

    def stop(self, name: str) -> None:
        self._servers.pop(name).close()

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        for memory in self._memories:
            memory.close()


ServeMaster = Masters


@pytest.fixture
def serve_master(pki: Pki, tmp_path: Path) -> Iterator[Masters]:
    masters = Masters(pki, tmp_path)
    yield masters
    masters.close()


def control_client(pki: Pki, address: MasterAddress) -> MasterClient:
    return MasterClient(
        address, client_context(pki.files(CONTROL_CLIENT)), connect_timeout=2, call_timeout=10
    )


def call(client: MasterClient, request_json: str) -> str:
    """One dispatch through the control service's client."""
    reply = client.call([(request_json, Attempt())])[0]
    assert reply is not None
    return reply


def tmp_pki(directory: Path, masters: list[str]) -> Pki:
    pki = Pki(directory)
    ensure_pki(pki, masters)
    return pki
