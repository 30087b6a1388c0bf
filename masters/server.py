"""`omstream master`: one master as an rpyc server over mutual TLS, exposing exactly one call."""

from __future__ import annotations

import datetime
import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rpyc
from rpyc.utils.server import ThreadedServer

from masters import metrics
from masters.executors import CallerExecutor, Executor, LocalClientExecutor, write_minion_config
from masters.keys import load_registry
from masters.master import Master, load_allowed
from masters.memory import ExecutedLog
from masters.protocol import RPYC_CONFIG
from masters.tls import MutualTlsAuthenticator, TlsFiles, server_context


@dataclass(frozen=True)
class MasterConfig:
    idc: str
    name: str  # as on its certificate
    host: str
    port: int
    tls: TlsFiles  # its server certificate, and the CA its clients' certificates come from
    client: str  # the one client identity it serves: the control service's certificate name
    operators_file: Path  # the registry of operators' public keys, to verify commands with
    memory_file: Path  # the durable record of the commands it has started
    allowlist_file: Path  # the named commands and states each IDC may run
    timeout_s: float  # time Salt has to return
    max_lifetime_s: int  # longest expires_at - issued_at it accepts
    salt_master_config: Path | None  # through this salt-master (LocalClient); None: masterless Salt
    salt_dir: Path  # where masterless Salt's configuration is written
    max_handshakes: int = 32  # connections not yet authenticated, each with its thread


class MasterService(rpyc.Service):
    """The whole remote surface: `execute(request_json) -> reply_json`."""

    def __init__(self, master: Master) -> None:
        self._master = master

    def on_connect(self, conn: Any) -> None:
        metrics.CONNECTIONS.inc()

    def on_disconnect(self, conn: Any) -> None:
        metrics.CONNECTIONS.dec()

    def exposed_execute(self, request_json: Any) -> str:
        # A netref (a live object of the client) would call back into the client: strings only.
        if type(request_json) is not str:
            return self._master.refusal("malformed", "the request must be a JSON string").model_dump_json()
        return self._master.execute(request_json)


class MasterServer(ThreadedServer):
    """A thread per connection, but at most `max_handshakes` connections that have not authenticated
    yet: more are closed at once, so unauthenticated peers cannot pile up threads."""

    def __init__(self, *args: Any, max_handshakes: int, **kwargs: Any) -> None:
        self._handshakes = threading.BoundedSemaphore(max_handshakes)
        authenticator = kwargs.pop("authenticator")
        super().__init__(*args, authenticator=self._bounded(authenticator), **kwargs)

    def _bounded(self, authenticator: MutualTlsAuthenticator) -> Any:
        def authenticate(sock: socket.socket) -> Any:
            try:
                return authenticator(sock)
            finally:
                self._handshakes.release()

        return authenticate

    def _accept_method(self, sock: socket.socket) -> None:
        if not self._handshakes.acquire(blocking=False):
            metrics.REFUSED.labels("busy").inc()
            self.clients.discard(sock)
            sock.close()
            return
        super()._accept_method(sock)


def build_server(master: Master, config: MasterConfig) -> MasterServer:
    return MasterServer(
        MasterService(master),
        hostname=config.host,
        port=config.port,
        authenticator=MutualTlsAuthenticator(server_context(config.tls), config.client),
        protocol_config=RPYC_CONFIG,
        logger=logging.getLogger("omstream.master"),
        max_handshakes=config.max_handshakes,
    )


def build_master(config: MasterConfig) -> Master:
    """Salt LocalClient when a salt-master is configured, else masterless Salt on this machine."""
    executor: Executor
    if config.salt_master_config:
        executor = LocalClientExecutor(config.salt_master_config)
    else:
        executor = CallerExecutor(write_minion_config(config.salt_dir, minion_id=socket.gethostname()))
    return Master(
        config.name,
        config.idc,
        executor,
        load_allowed(config.allowlist_file, config.idc),
        load_registry(config.operators_file),
        ExecutedLog(config.memory_file),
        config.timeout_s,
        datetime.timedelta(seconds=config.max_lifetime_s),
    )
