"""Dispatch to an IDC: pick a healthy master, call it over mutual-TLS rpyc, fail over to the next one.

rpyc calls block, so they run in a thread pool sized for every IDC's concurrency limit; each master
keeps idle connections for reuse, and one that fails to connect is tried last for a while.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import rpyc
from rpyc.core.stream import SocketStream

from control import metrics
from masters.protocol import RPYC_CONFIG, MasterReply
from masters.tls import no_delay

_DOWN_FOR_S = 5.0


class MasterUnavailable(ConnectionError):
    """The master could not be reached, or the connection broke before a reply."""


@dataclass(frozen=True)
class MasterAddress:
    name: str  # the name its certificate carries
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> MasterAddress:
        """`host:port`, or `name@host:port` when the certificate name is not the host."""
        name, _, address = text.rpartition("@")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bad master address {text!r}: expected [name@]host:port")
        return cls(name=name or host, host=host, port=int(port))


def connect(address: MasterAddress, context: ssl.SSLContext, timeout: float, call_timeout: float) -> Any:
    """An rpyc connection over TLS that checks the master's certificate carries `address.name`."""
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    try:
        no_delay(sock)
        tls = context.wrap_socket(sock, server_hostname=address.name)
    except BaseException:
        sock.close()
        raise
    tls.settimeout(None)
    config = {**RPYC_CONFIG, "sync_request_timeout": call_timeout}
    return rpyc.utils.factory.connect_stream(SocketStream(tls), service=rpyc.VoidService, config=config)


class MasterClient:
    def __init__(
        self, address: MasterAddress, context: ssl.SSLContext, connect_timeout: float, call_timeout: float
    ) -> None:
        self.address = address
        self._context = context
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._down_until = 0.0

    @property
    def healthy(self) -> bool:
        return time.monotonic() >= self._down_until

    def call(self, request_json: str) -> str:
        connection = self._checkout()
        started = time.perf_counter()
        try:
            reply = str(connection.root.execute(request_json))
        except (EOFError, OSError) as error:
            connection.close()
            self._mark_down()
            raise MasterUnavailable(f"{self.address.name}: connection lost: {error}") from error
        metrics.RPC_SECONDS.labels(self.address.name).observe(time.perf_counter() - started)
        with self._lock:
            self._idle.append(connection)
        return reply

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _checkout(self) -> Any:
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed:
                    return connection
        try:
            return connect(self.address, self._context, self._connect_timeout, self._call_timeout)
        except (OSError, ssl.SSLError) as error:
            self._mark_down()
            raise MasterUnavailable(f"{self.address.name}: {error}") from error

    def _mark_down(self) -> None:
        self._down_until = time.monotonic() + _DOWN_FOR_S


class Idc:
    """The masters of one IDC: round-robin over healthy ones, the rest tried last, at most N in flight."""

    def __init__(self, name: str, masters: list[MasterClient], concurrency: int, pool: ThreadPoolExecutor):
        self.name = name
        self.masters = masters
        self._turn = itertools.count()
        self._slots = asyncio.Semaphore(concurrency)
        self._pool = pool

    async def dispatch(self, request_json: str) -> MasterReply:
        async with self._slots:
            errors = []
            for attempt, master in enumerate(self._in_order()):
                if attempt:
                    metrics.FAILOVERS.labels(self.name).inc()
                try:
                    reply = await asyncio.get_running_loop().run_in_executor(
                        self._pool, master.call, request_json
                    )
                except MasterUnavailable as error:
                    errors.append(str(error))
                    continue
                return MasterReply.model_validate_json(reply)
            raise MasterUnavailable(f"no master of {self.name} reachable: {'; '.join(errors)}")

    def _in_order(self) -> list[MasterClient]:
        start = next(self._turn) % len(self.masters)
        rotated = self.masters[start:] + self.masters[:start]
        return [m for m in rotated if m.healthy] + [m for m in rotated if not m.healthy]

    def close(self) -> None:
        for master in self.masters:
            master.close()
