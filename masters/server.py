"""`omstream master`: one master as an rpyc server over mutual TLS, exposing exactly one call."""

from __future__ import annotations

import logging
import socket
from typing import Any

import rpyc
from rpyc.utils.server import ThreadedServer

from control.pki import Pki
from masters import metrics
from masters.executors import CallerExecutor, Executor, LocalClientExecutor, write_minion_config
from masters.master import ALLOWLIST_FILE, Master, load_allowed
from masters.protocol import RPYC_CONFIG
from masters.tls import MutualTlsAuthenticator, server_context
from omstream.settings import Settings


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


def build_server(master: Master, pki: Pki, host: str, port: int) -> ThreadedServer:
    return ThreadedServer(
        MasterService(master),
        hostname=host,
        port=port,
        authenticator=MutualTlsAuthenticator(server_context(pki, master.name)),
        protocol_config=RPYC_CONFIG,
        logger=logging.getLogger("omstream.master"),
    )


def build_master(settings: Settings, idc: str, name: str) -> Master:
    """Salt LocalClient when a salt-master is configured, else masterless Salt on this machine."""
    executor: Executor
    if settings.salt_master_config:
        executor = LocalClientExecutor(settings.salt_master_config)
    else:
        config = write_minion_config(settings.state_dir / "salt" / name, minion_id=socket.gethostname())
        executor = CallerExecutor(config)
    allowed = load_allowed(settings.command_allowlist_file or ALLOWLIST_FILE, idc)
    return Master(name, idc, executor, allowed, settings.ops_timeout_s)
