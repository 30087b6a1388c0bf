"""How `omstream up` (and `demo`) run their services: child processes that die with them, one run per
state directory, and restarts with backoff.

- A child gets SIGKILL when its parent dies, even by `kill -9` (Linux's parent-death signal). The
  kernel sends it when the *thread* that started the child ends, so only the main thread arms it.
  Each child leads its own process group, so stopping it stops what it started.
- One run per state directory: `<state>/up.lock` is locked for the run's life (the kernel releases it
  however the run ends) and holds its PID. `<state>/up.json` names the run and its services with their
  PIDs and start times; found with the lock free, it is what a run that did not stop left, and the
  services of it still alive are stopped.
- A service that exits is restarted after 1, 2, 4 ... 30 s (back to 1 s once it ran a minute), with
  a warning when it keeps crashing. A critical service (the broker: Tansu keeps topics in memory
  only, so a restarted one would be empty) that exits stops the run instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a service up this long is healthy again: its next restart waits FIRST_BACKOFF_S
CRASHING_AFTER = 4  # quick exits in a row before the run says a service keeps crashing
_POLL_S = 0.2


class AlreadyRunning(RuntimeError):
    """Another `omstream up` or `demo` runs on this state directory."""


class ServiceFailed(RuntimeError):
    """A service the run needs exited: the run stops."""


class NotReady(TimeoutError):
    """A service did not become ready (listen, answer) in time."""


@dataclass(frozen=True)
class Service:
    """How to start one service: its command line, environment and log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    critical: bool = False


def _die_with_parent(parent: int) -> None:
    """Runs in the child between fork and exec: SIGKILL when the parent dies, and now if it already has."""
    if _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
        os._exit(1)


def spawn(service: Service) -> subprocess.Popen[bytes]:
    """Start a service in its own process group, dying with this process when started from the main thread
    (from another thread it would die with that thread)."""
    service.log.parent.mkdir(parents=True, exist_ok=True)
    parent = os.getpid()
    with service.log.open("ab") as log:
        return subprocess.Popen(
            service.argv,
            env=service.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=(
                (lambda: _die_with_parent(parent))
                if threading.current_thread() is threading.main_thread()
                else None
            ),
        )


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: ends exactly the process we started; with `group`
    (a process `spawn` started), then whatever is left in its process group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def start_time(pid: int) -> int | None:
    """When a live process started (clock ticks after boot): with its PID, it names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (command) ", the command may hold spaces
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _alive(pid: int, started: int | None) -> bool:
    return started is not None and start_time(pid) == started


def _status_path(state_dir: Path) -> Path:
    return state_dir / "up.json"


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """What the run on this state directory wrote about itself (None without a status file)."""
    try:
        status = json.loads(_status_path(state_dir).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def running_status(state_dir: Path) -> dict[str, Any] | None:
    """The status of the run on this state directory if it is alive."""
    status = read_status(state_dir)
    return status if status and _alive(status["pid"], status["start_time"]) else None


def _services_of(status: dict[str, Any]) -> str:
    services = status.get("services", {})
    return ", ".join(f"{name} {service['pid']}" for name, service in services.items()) or "none yet"


@contextlib.contextmanager
def claim_state_dir(state_dir: Path, command: str, note: Callable[[str], None]) -> Iterator[None]:
    """Hold the state directory for one run; `note` hears, in one line, about a run that did not stop."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = os.open(state_dir / "up.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, _, holder = os.pread(lock, 64, 0).decode().strip().partition(" ")
        os.close(lock)
        status = running_status(state_dir)
        services = f"; its services: {_services_of(status)}" if status else ""
        raise AlreadyRunning(
            f"omstream {holder or 'up'} (pid {pid or '?'}) is already running on {state_dir}{services}: "
            "stop it first"
        ) from None
    try:
        os.ftruncate(lock, 0)
        os.pwrite(lock, f"{os.getpid()} {command}\n".encode(), 0)
        stale = read_status(state_dir)
        if stale is not None:
            note(_stop_leftovers(stale))
            _status_path(state_dir).unlink(missing_ok=True)
        yield
    finally:
        _status_path(state_dir).unlink(missing_ok=True)
        os.close(lock)


def _stop_leftovers(stale: dict[str, Any]) -> str:
    """Stop the services of a run that ended without stopping them; one line saying what was found."""
    survivors = []
    for name, service in stale.get("services", {}).items():
        if _alive(service["pid"], service["start_time"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(service["pid"], signal.SIGKILL)
            survivors.append(f"{name} {service['pid']}")
    left = (
        f"stopped what was still running: {', '.join(survivors)}"
        if survivors
        else "none of its services survived"
    )
    return (
        f"the previous omstream {stale.get('command', 'up')} here (pid {stale['pid']}) ended without "
        f"stopping its services; {left} (events its broker had not stored are lost)"
    )


@dataclass
class _Supervised:
    service: Service
    process: subprocess.Popen[bytes]
    started: float
    quick_exits: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Starts services, restarts those that exit, and stops them all, in reverse order, at the end."""

    state_dir: Path
    command: str
    say: Callable[[str], None]
    details: dict[str, Any] = field(default_factory=dict)  # more for the status file
    _services: list[_Supervised] = field(default_factory=list)

    def start(self, service: Service) -> subprocess.Popen[bytes]:
        process = spawn(service)
        self._services.append(_Supervised(service, process, time.monotonic()))
        self.write_status()
        return process

    def watch(self, until: Callable[[], bool] = lambda: False) -> None:
        """Restart services as they exit, until `until()` or a critical service exits (ServiceFailed)."""
        while not until():
            now = time.monotonic()
            for supervised in self._services:
                if supervised.restart_at is not None and now >= supervised.restart_at:
                    self._restart(supervised, now)
                elif supervised.restart_at is None and supervised.process.poll() is not None:
                    self._exited(supervised, now)
            time.sleep(_POLL_S)

    def stop(self) -> None:
        for supervised in reversed(self._services):
            stop_process(supervised.process, grace=20.0, group=True)

    def write_status(self) -> None:
        services = {
            supervised.service.name: {
                "pid": supervised.process.pid,
                "start_time": start_time(supervised.process.pid),
            }
            for supervised in self._services
        }
        status = {
            "pid": os.getpid(),
            "start_time": start_time(os.getpid()),
            "command": self.command,
            "services": services,
            **self.details,
        }
        path = _status_path(self.state_dir)
        path.with_suffix(".tmp").write_text(json.dumps(status))
        path.with_suffix(".tmp").replace(path)

    def _exited(self, supervised: _Supervised, now: float) -> None:
        service, code = supervised.service, supervised.process.returncode
        stop_process(supervised.process, group=True)  # what it started, in its process group
        if service.critical:
            raise ServiceFailed(f"{service.name} exited with code {code}; see {service.log}")
        ran = now - supervised.started
        supervised.quick_exits = 0 if ran >= STABLE_AFTER_S else supervised.quick_exits + 1
        delay = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(0, supervised.quick_exits - 1))
        supervised.restart_at = now + delay
        if supervised.quick_exits >= CRASHING_AFTER:
            self.say(
                f"{service.name} keeps crashing ({supervised.quick_exits} exits in a row within a minute "
                f"of starting, last code {code}); restarting in {delay:g} s; see {service.log}"
            )
        else:
            self.say(f"{service.name} exited with code {code} after {ran:.0f} s; restarting in {delay:g} s")

    def _restart(self, supervised: _Supervised, now: float) -> None:
        supervised.process = spawn(supervised.service)
        supervised.started, supervised.restart_at = now, None
        self.say(f"{supervised.service.name} restarted (pid {supervised.process.pid})")
        self.write_status()
