"""Dispatch to an IDC: pick a master, call it over mutual-TLS rpyc, fail over only while nothing was sent.

Each command has its own order of the IDC's masters (rendezvous hashing of its id and their names),
healthy ones first: commands spread over the masters, and every dispatch of one command, by any
control replica, asks the same master first, whose durable memory refuses to run it twice. A command
moves to the next master only when the previous one was not reached; once the request is sent, a
broken connection or a missing reply means it may have run, and it is never sent elsewhere.

rpyc calls block, so they run in a thread pool sized for every IDC's concurrency limit; each master
keeps idle connections for reuse, and one that fails to connect is tried last for a while.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import rpyc
from pydantic import ValidationError
from rpyc.core.stream import SocketStream
from rpyc.core.vinegar import GenericException

from control import metrics
from masters.protocol import MAX_BATCH, RPYC_CONFIG, CommandRejected, MasterReply, decode_batch, encode_batch
from masters.tls import no_delay

_DOWN_FOR_S = 5.0
_MAX_PENDING = 100  # messages an idle connection may hold


class MasterUnavailable(ConnectionError):
    """No master got the request: it did not run."""


class BadMasterAddress(ValueError):
    """A master address that is not `[name@]host:port`."""


class ReplyLost(ConnectionError):
    """The request was sent, but the connection broke or no readable reply came: it may have run."""


class Attempt:
    """One dispatch of one command, shared with the thread that sends it: once the caller gives up
    (`abandon`), the request is no longer sent, so the caller knows whether it ever was."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = False
        self._abandoned = False

    def send(self) -> bool:
        """Called right before the request goes out: False once abandoned (then it must not go)."""
        with self._lock:
            self._sent = not self._abandoned
            return self._sent

    def abandon(self) -> bool:
        """Give up on the reply; returns whether the request was never sent."""
        with self._lock:
            self._abandoned = True
            return not self._sent


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
            raise BadMasterAddress(f"bad master address {text!r}: expected [name@]host:port")
        return cls(name=name or host, host=host, port=int(port))


def connect(address: MasterAddress, context: ssl.SSLContext, timeout: float, call_timeout: float) -> Any:
    """An rpyc connection over TLS that checks the master's certificate carries `address.name`, with
    the master's root fetched (so a master that refuses us fails here, before any request)."""
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    try:
        no_delay(sock)
        tls = context.wrap_socket(sock, server_hostname=address.name)
    except BaseException:
        sock.close()
        raise
    tls.settimeout(None)
    config = {**RPYC_CONFIG, "sync_request_timeout": call_timeout}
    connection = rpyc.utils.factory.connect_stream(SocketStream(tls), service=rpyc.VoidService, config=config)
    try:
        connection.root  # noqa: B018 - the first request, answered only by a master that accepted us
    except BaseException:
        connection.close()
        raise
    return connection


def _idle_and_open(connection: Any) -> bool:
    """Whether a pooled connection can take a call. The master may have sent messages after its last
    reply (rpyc's own, e.g. releasing a reference): they are served here, so they are not mistaken
    for a closed connection, which made every call open a new one. A connection the master closed,
    or that breaks the protocol, is closed."""
    if connection.closed:
        return False
    try:
        for _ in range(_MAX_PENDING):  # each poll serves one message; EOF raises (and closes)
            if not connection.poll(0):
                return not connection.closed
    except Exception:  # the master closed it, or sent what rpyc refuses: this connection is done
        pass
    connection.close()  # or it kept sending: not idle
    return False


@dataclass(frozen=True)
class _Link:
    """A connection to a master with its remote `execute`, looked up once: each lookup of a remote
    attribute is a round trip of its own, which would double every call's."""

    connection: Any
    execute: Any


class MasterClient:
    def __init__(
        self, address: MasterAddress, context: ssl.SSLContext, connect_timeout: float, call_timeout: float
    ) -> None:
        self.address = address
        self._context = context
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._idle: list[_Link] = []
        self._lock = threading.Lock()
        self._down_until = 0.0

    @property
    def healthy(self) -> bool:
        return time.monotonic() >= self._down_until

    def call(self, requests: Sequence[tuple[str, Attempt]]) -> list[str | None]:
        """Each request's reply, None for one abandoned before it was sent, all in one call; raises
        MasterUnavailable when nothing was sent (the master is not reachable), ReplyLost when the
        requests were and no reply came."""
        link = self._checkout()
        sending = [attempt.send() for _, attempt in requests]
        batch = [request for (request, _), send in zip(requests, sending, strict=True) if send]
        if not batch:
            self._check_in(link)
            return [None] * len(requests)
        started = time.perf_counter()
        try:
            reply = str(link.execute(encode_batch(batch)))
        except (EOFError, OSError, GenericException) as error:  # a reply timeout is an OSError too
            link.connection.close()
            self._mark_down()
            raise ReplyLost(f"{self.address.name}: no reply after the request was sent: {error}") from error
        metrics.RPC_SECONDS.labels(self.address.name).observe(time.perf_counter() - started)
        self._check_in(link)
        replies = iter(self._replies(reply, len(batch)))
        return [next(replies) if send else None for send in sending]

    def _replies(self, reply: str, count: int) -> list[str]:
        """The `count` replies of a batch; a refusal of the whole batch answers each of its requests."""
        try:
            if not reply.startswith("["):
                MasterReply.model_validate_json(reply)
                return [reply] * count
            replies = decode_batch(reply, count)
        except (CommandRejected, ValidationError):
            replies = []
        if len(replies) != count:
            raise ReplyLost(f"{self.address.name}: the reply is not a result set")
        return replies

    def _check_in(self, link: _Link) -> None:
        with self._lock:
            self._idle.append(link)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for link in idle:
            link.connection.close()

    def _checkout(self) -> _Link:
        with self._lock:
            while self._idle:
                link = self._idle.pop()
                if _idle_and_open(link.connection):
                    return link
        try:
            connection = connect(self.address, self._context, self._connect_timeout, self._call_timeout)
        except (OSError, EOFError) as error:  # ssl.SSLError is an OSError
            self._mark_down()
            raise MasterUnavailable(f"{self.address.name}: {error}") from error
        try:
            return _Link(connection, connection.root.execute)
        except (OSError, EOFError, GenericException) as error:  # nothing was sent but the lookup
            connection.close()
            self._mark_down()
            raise MasterUnavailable(f"{self.address.name}: {error}") from error

    def _mark_down(self) -> None:
        self._down_until = time.monotonic() + _DOWN_FOR_S


class _Batches:
    """The requests waiting for one master, sent together: at most `calls` batches are in flight to
    it, and whatever queued meanwhile goes in the next (up to MAX_BATCH), so a busy master gets few
    large calls, each claimed with one fsync, and an idle one gets each request at once."""

    def __init__(self, master: MasterClient, pool: ThreadPoolExecutor, calls: int) -> None:
        self._master = master
        self._pool = pool
        self._calls = calls
        self._queue: list[tuple[str, Attempt, asyncio.Future[str]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, request_json: str, attempt: Attempt) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.append((request_json, attempt, future))
        self._send_queued()
        return await future

    def _send_queued(self) -> None:
        while self._queue and len(self._sending) < self._calls:
            batch = [item for item in self._queue[:MAX_BATCH] if not item[2].done()]  # done: given up
            del self._queue[:MAX_BATCH]
            if batch:
                task = asyncio.create_task(self._send(batch))
                self._sending.add(task)
                task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._send_queued()

    async def _send(self, batch: list[tuple[str, Attempt, asyncio.Future[str]]]) -> None:
        requests = [(request, attempt) for request, attempt, _ in batch]
        try:
            replies = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._master.call, requests
            )
        except MasterUnavailable as error:
            _fail(batch, MasterUnavailable, str(error))
        except Exception as error:  # ReplyLost, or anything unforeseen once requests may have gone
            _fail(batch, ReplyLost, str(error))
        else:
            name = self._master.address.name
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if future.done():
                    continue
                if reply is None:
                    future.set_exception(MasterUnavailable(f"{name}: abandoned before sending"))
                else:
                    future.set_result(reply)


def _fail(batch: list[tuple[str, Attempt, asyncio.Future[str]]], error: type[Exception], why: str) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(error(why))


class Idc:
    """The masters of one IDC, in each command's own order, healthy ones first; at most N in flight."""

    def __init__(
        self,
        name: str,
        masters: list[MasterClient],
        concurrency: int,
        pool: ThreadPoolExecutor,
        calls_per_master: int,
    ):
        self.name = name
        self.masters = masters
        self._slots = asyncio.Semaphore(concurrency)
        self._batches = {master: _Batches(master, pool, calls_per_master) for master in masters}

    async def dispatch(self, command_id: str, request_json: str, attempt: Attempt) -> MasterReply:
        """The reply of the first master that gets the request; raises MasterUnavailable when none
        was reachable, ReplyLost when the one that got it did not answer."""
        async with self._slots:
            errors = []
            for tried, master in enumerate(self.in_order(command_id)):
                if tried:
                    metrics.FAILOVERS.labels(self.name).inc()
                try:
                    reply = await self._batches[master].call(request_json, attempt)
                except MasterUnavailable as error:
                    errors.append(str(error))
                    continue
                try:
                    return MasterReply.model_validate_json(reply)
                except ValidationError:
                    raise ReplyLost(f"{master.address.name}: the reply is not a result set") from None
            raise MasterUnavailable(f"no master of {self.name} reachable: {'; '.join(errors)}")

    def in_order(self, command_id: str) -> list[MasterClient]:
        def rank(master: MasterClient) -> bytes:
            return hashlib.sha256(f"{command_id}/{master.address.name}".encode()).digest()

        ranked = sorted(self.masters, key=rank)
        return [m for m in ranked if m.healthy] + [m for m in ranked if not m.healthy]

    def close(self) -> None:
        for master in self.masters:
            master.close()
