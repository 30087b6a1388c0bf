"""`omstream master`: one master as an rpyc server over mutual TLS, exposing exactly one call."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rpyc
from rpyc.utils.server import ThreadedServer

from masters import metrics
from masters.executors import CallerExecutor, Executor, LocalClientExecutor, write_minion_config
from masters.master import Master, load_allowed
from masters.protocol import RPYC_CONFIG
from masters.tls import MutualTlsAuthenticator, TlsFiles, server_context


@dataclass(frozen=True)
class MasterConfig:
    idc: str
    name: str  # as on its certificate
    host: str
    port: int
    tls: TlsFiles  # its server certificate, and the CA its clients' certificates come from
    allowlist_file: Path  # the named commands and states each IDC may run
    timeout_s: float  # time Salt has to return
    salt_master_config: Path | None  # through this salt-master (LocalClient); None: masterless Salt
    salt_dir: Path  # where masterless Salt's configuration is written


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
            return self._master.failure("the request must be a JSON string").model_dump_json()
        return self._master.execute(request_json)


def build_server(master: Master, config: MasterConfig) -> ThreadedServer:
    return ThreadedServer(
        MasterService(master),
        hostname=config.host,
        port=config.port,
        authenticator=MutualTlsAuthenticator(server_context(config.tls)),
        protocol_config=RPYC_CONFIG,
        logger=logging.getLogger("omstream.master"),
    )


def build_master(config: MasterConfig) -> Master:
    """Salt LocalClient when a salt-master is configured, else masterless Salt on this machine."""
    executor: Executor
    if config.salt_master_config:
        executor = LocalClientExecutor(config.salt_master_config)
    else:
        executor = CallerExecutor(write_minion_config(config.salt_dir, minion_id=socket.gethostname()))
    allowed = load_allowed(config.allowlist_file, config.idc)
    return Master(config.name, config.idc, executor, allowed, config.timeout_s)
