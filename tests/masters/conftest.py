"""Masters for tests: a private CA, and a real master (rpyc over mutual TLS) served from a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from control.dispatch import MasterAddress, MasterClient
from control.pki import CONTROL_CLIENT, Pki, ensure_pki
from masters.executors import CallerExecutor, Executor, write_minion_config
from masters.master import ALLOWLIST_FILE, Master, load_allowed
from masters.server import MasterConfig, build_server
from masters.tls import client_context
from omstream.embedded import free_port

MINION_ID = socket.gethostname()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    ensure_pki(pki, ["bj-1", "bj-2"])
    return pki


@pytest.fixture(scope="session")
def caller(tmp_path_factory: pytest.TempPathFactory) -> CallerExecutor:
    """Masterless Salt on this machine (loading Salt's modules takes a moment: once per session)."""
    return CallerExecutor(write_minion_config(tmp_path_factory.mktemp("minion"), MINION_ID))


ServeMaster = Callable[[Executor], MasterAddress]


@pytest.fixture
def serve_master(pki: Pki) -> Iterator[ServeMaster]:
    """Starts master `bj-1` of IDC `bj` around an executor; stops it after the test."""
    servers = []

    def serve(executor: Executor) -> MasterAddress:
        master = Master("bj-1", "bj", executor, load_allowed(ALLOWLIST_FILE, "bj"), timeout=10)
        config = MasterConfig(
            idc="bj",
            name="bj-1",
            host="127.0.0.1",
            port=free_port(),
            tls=pki.files("bj-1"),
            allowlist_file=ALLOWLIST_FILE,
            timeout_s=10,
            salt_master_config=None,
            salt_dir=pki.directory / "salt",
        )
        server = build_server(master, config)
        threading.Thread(target=server.start, daemon=True).start()
        servers.append(server)
        while not server.active:  # listening starts in the thread
            time.sleep(0.01)
        return MasterAddress(name="bj-1", host="127.0.0.1", port=server.port)

    yield serve
    for server in servers:
        server.close()


def control_client(pki: Pki, address: MasterAddress) -> MasterClient:
    return MasterClient(
        address, client_context(pki.files(CONTROL_CLIENT)), connect_timeout=2, call_timeout=10
    )


def tmp_pki(directory: Path, masters: list[str]) -> Pki:
    pki = Pki(directory)
    ensure_pki(pki, masters)
    return pki
