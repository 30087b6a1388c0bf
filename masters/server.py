"""`omstream master`: one master as an rpyc server over mutual TLS, exposing exactly one call."""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rpyc
from rpyc.utils.server import ThreadedServer

from masters import metrics
from masters.executors import CallerExecutor, Executor, LocalClientExecutor, write_minion_config
from masters.keys import load_registry
from masters.master import Master, load_allowed
from masters.memory import ClaimLedger
from masters.protocol import (
    MAX_BATCH,
    MAX_COMMAND_BYTES,
    RPYC_CONFIG,
    CommandRejected,
    decode_batch,
    encode_batch,
)
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
    ledger_dir: Path  # the IDC's record of the commands its masters started, shared by all of them
    allowlist_file: Path  # the named commands and states each IDC may run
    timeout_s: float  # time Salt has to return
    max_lifetime_s: int  # longest expires_at - issued_at it accepts
    salt_master_config: Path | None  # through this salt-master (LocalClient); None: masterless Salt
    salt_dir: Path  # where masterless Salt's configuration is written
    max_handshakes: int = 64  # connections not yet authenticated, each with its thread
    max_handshakes_per_peer: int = 16  # of which from one address (the control service opens up to
    # its per-IDC concurrency at once)
    handshakes_per_s: float = 20.0  # new connections one address may open, sustained
    handshake_burst: int = 40  # and at once


# Each request of a batch is checked against its own limit once decoded; this bounds the whole
# (a JSON string's escaping can double a request's length).
_MAX_BATCH_CHARS = MAX_BATCH * 2 * (MAX_COMMAND_BYTES + 1024)


class MasterService(rpyc.Service):
    """The whole remote surface: `execute(batch_json) -> replies_json`, a batch of requests (a JSON
    array of their JSON strings, see `encode_batch`) answered by the array of their replies; a batch
    that is not one is answered by one refusal."""

    def __init__(self, master: Master) -> None:
        self._master = master

    def on_connect(self, conn: Any) -> None:
        metrics.AUTHENTICATED.inc()
        metrics.CONNECTIONS.inc()

    def on_disconnect(self, conn: Any) -> None:
        metrics.CONNECTIONS.dec()

    def exposed_execute(self, batch_json: Any) -> str:
        try:
            # A netref (a live object of the client) would call back into the client: strings only.
            if type(batch_json) is not str:
                raise CommandRejected("malformed", "the request must be a JSON string")
            if len(batch_json) > _MAX_BATCH_CHARS:
                raise CommandRejected("too_large", f"a batch is at most {_MAX_BATCH_CHARS} characters")
            requests = decode_batch(batch_json, MAX_BATCH)
        except CommandRejected as error:
            metrics.REFUSALS.labels(error.reason).inc()
            return self._master.refusal(error.reason, str(error)).model_dump_json()
        return encode_batch(self._master.execute_many(requests))


class HandshakeGate:
    """Who may start a TLS handshake now: at most `total` connections in their handshake at once, at
    most `per_peer` of them from one address, and new connections from one address at most `rate` per
    second (a bucket of `burst`). So one address, which needs no certificate to connect, can neither
    take every handshake slot nor keep them busy by reconnecting: other addresses still get in."""

    def __init__(
        self,
        total: int,
        per_peer: int,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._total, self._per_peer, self._rate, self._burst = total, per_peer, rate, burst
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}  # handshakes in progress per address
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)

    def enter(self, peer: str) -> str:
        """ "" when `peer` may start a handshake (then `leave` must follow), else why not: `busy`,
        `peer_busy` or `rate`."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(peer, (float(self._burst), now))
            tokens = min(float(self._burst), tokens + (now - then) * self._rate)
            if tokens < 1:
                self._buckets[peer] = (tokens, now)
                return "rate"
            self._buckets[peer] = (tokens - 1, now)
            if sum(self._open.values()) >= self._total:
                return "busy"
            if self._open.get(peer, 0) >= self._per_peer:
                return "peer_busy"
            self._open[peer] = self._open.get(peer, 0) + 1
            if len(self._buckets) > 10_000:
                self._forget_idle(now)
            return ""

    def leave(self, peer: str) -> None:
        with self._lock:
            left = self._open.pop(peer, 1) - 1
            if left:
                self._open[peer] = left

    def _forget_idle(self, now: float) -> None:
        """Addresses with a full bucket and no handshake are as good as unknown: drop them."""
        self._buckets = {
            peer: (tokens, then)
            for peer, (tokens, then) in self._buckets.items()
            if peer in self._open or tokens + (now - then) * self._rate < self._burst
        }


class MasterServer(ThreadedServer):
    """A thread per connection, but only for connections the `HandshakeGate` lets in: the others are
    closed at once, so unauthenticated peers cannot pile up threads or shut the control service out."""

    def __init__(self, *args: Any, gate: HandshakeGate, **kwargs: Any) -> None:
        self._gate = gate
        self._peers: dict[int, str] = {}  # the address each accepted socket was let in for
        authenticator = kwargs.pop("authenticator")
        super().__init__(*args, authenticator=self._gated(authenticator), **kwargs)

    def _gated(self, authenticator: MutualTlsAuthenticator) -> Any:
        def authenticate(sock: socket.socket) -> Any:
            peer = self._peers.pop(id(sock), "")
            try:
                return authenticator(sock)
            finally:
                self._gate.leave(peer)

        return authenticate

    def _accept_method(self, sock: socket.socket) -> None:
        peer = _peer(sock)
        refused = self._gate.enter(peer)
        if refused:
            metrics.REFUSED.labels(refused).inc()
            self.clients.discard(sock)
            sock.close()
            return
        self._peers[id(sock)] = peer
        super()._accept_method(sock)


def _peer(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except OSError:  # already disconnected
        return ""


def build_server(master: Master, config: MasterConfig) -> MasterServer:
    return MasterServer(
        MasterService(master),
        hostname=config.host,
        port=config.port,
        authenticator=MutualTlsAuthenticator(server_context(config.tls), config.client),
        protocol_config=RPYC_CONFIG,
        logger=logging.getLogger("omstream.master"),
        gate=HandshakeGate(
            config.max_handshakes,
            config.max_handshakes_per_peer,
            config.handshakes_per_s,
            config.handshake_burst,
        ),
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
        ClaimLedger(config.ledger_dir, config.name),
        config.timeout_s,
        datetime.timedelta(seconds=config.max_lifetime_s),
    )
