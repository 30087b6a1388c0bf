"""The IDC's durable record of the commands its masters have started, shared by every master of the
IDC, so that no retried dispatch, restart, failover or second control replica runs a command twice
in the IDC.

An append-only file of JSON lines `{"command_id", "expires_at", "status", "master"}` in a directory
all the IDC's masters mount (`claims.log`), guarded by an exclusive `flock` on `claims.lock`. A
master claims a command under the lock: it first reads what the IDC's other masters appended since
it last looked, and appends `started` only if no master of the IDC has claimed the command. The
claim is fsynced **before** the command runs; concurrent claims share one fsync (group commit), and
the lock is not held while fsyncing. Outcomes (`succeeded`, `failed`, `refused`) are appended after,
without an fsync: losing one in a crash leaves `started`, read as "may have run".

An entry is kept until its command expires, since a master refuses an expired command anyway; the
file is rewritten without expired entries (atomically, under the lock) when it holds many more lines
than entries. A master that finds the file replaced by another master's rewrite reopens and rereads it.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

STARTED = "started"
CLAIMS_FILE = "claims.log"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Executed:
    expires_at: datetime.datetime
    status: str  # `started` until the outcome is known
    master: str = ""  # the master of the IDC that claimed it


class ClaimLedger:
    """One master's handle on its IDC's shared ledger (`directory` is the same for all of them)."""

    def __init__(self, directory: Path, master: str, now: Callable[[], datetime.datetime] = _utc_now) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / CLAIMS_FILE
        self._master = master
        self._now = now
        self._guard = threading.Lock()  # this process's state and file handle
        self._sync = threading.Lock()  # one fsync at a time; the threads waiting share the next
        self._lock_fd = os.open(directory / "claims.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._fd = -1
        self._entries: dict[str, Executed] = {}
        self._read_to = 0
        self._lines = 0
        self._appended = 0  # claims appended by this process
        self._synced = 0  # of which are on disk
        with self._guard, self._exclusive():
            self._entries = {key: e for key, e in self._entries.items() if e.expires_at > now()}
            self._rewrite()

    def claim(self, command_id: str, expires_at: datetime.datetime) -> Executed | None:
        """None for a command no master of the IDC has started, once it is recorded durably that
        this master starts it now; else what the IDC knows of it (it must not run again)."""
        return self.claim_many([(command_id, expires_at)])[0]

    def claim_many(self, claims: Sequence[tuple[str, datetime.datetime]]) -> list[Executed | None]:
        """`claim` for each (command id, expiry), with one lock and one fsync for all of them; the
        same id twice is claimed by its first occurrence."""
        known: list[Executed | None] = []
        with self._guard, self._exclusive():
            for command_id, expires_at in claims:
                prior = self._entries.get(command_id)
                if prior is None:
                    self._append(command_id, Executed(expires_at, STARTED, self._master))
                    self._appended += 1
                known.append(prior)
            mine = self._appended
        if None in known:
            self._durable(mine)
        return known

    def finish(self, outcomes: Sequence[tuple[str, str]]) -> None:
        """Record each (command id, outcome) under one lock, without an fsync (see the module doc)."""
        with self._guard, self._exclusive():
            for command_id, status in outcomes:
                entry = self._entries.get(command_id)
                if entry is not None:
                    self._append(command_id, dataclasses.replace(entry, status=status))

    def close(self) -> None:
        with self._guard:
            os.close(self._fd)
            os.close(self._lock_fd)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the IDC's lock, having read what the other masters appended (or rewritten)."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._catch_up()
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _catch_up(self) -> None:
        try:
            current = os.stat(self._path).st_ino
        except FileNotFoundError:
            current = -1
        if self._fd < 0 or os.fstat(self._fd).st_ino != current:  # first open, or rewritten by another
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            self._entries, self._read_to, self._lines = {}, 0, 0
        size = os.fstat(self._fd).st_size
        if size <= self._read_to:
            return
        tail = os.pread(self._fd, size - self._read_to, self._read_to)
        complete = tail.rfind(b"\n") + 1
        if complete < len(tail):
            # a torn last line (a crash while writing): end it, so the next line stands on its own
            os.write(self._fd, b"\n")
            complete = len(tail) + 1
        for line in tail[:complete].splitlines():
            parsed = _parse(line)
            if parsed is not None:
                self._entries[parsed[0]] = parsed[1]
            self._lines += 1
        self._read_to += complete

    def _append(self, command_id: str, entry: Executed) -> None:
        line = _line(command_id, entry)
        os.write(self._fd, line)
        self._read_to += len(line)
        self._entries[command_id] = entry
        self._lines += 1
        if self._lines > 2 * len(self._entries) + 1_000:
            now = self._now()
            self._entries = {key: e for key, e in self._entries.items() if e.expires_at > now}
            self._rewrite()

    def _durable(self, claim: int) -> None:
        """Return once this process's claim number `claim` is on disk: the first waiter fsyncs for
        every claim appended so far, and those who waited behind it find theirs done."""
        with self._sync:
            if self._synced >= claim:
                return
            with self._guard:
                covered = self._appended
                fd = os.dup(self._fd)  # the file another master's rewrite may replace meanwhile
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._synced = max(self._synced, covered)

    def _rewrite(self) -> None:
        """Replace the file with the live entries (atomically: a crash leaves the old or the new one)."""
        temporary = self._path.with_suffix(".tmp")
        with temporary.open("wb") as file:
            file.writelines(_line(key, entry) for key, entry in self._entries.items())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._path)
        directory = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND, 0o600)
        self._read_to = os.fstat(self._fd).st_size
        self._lines = len(self._entries)
        # the rewrite is on disk, with every claim appended before it
        self._synced = max(self._synced, self._appended)


def _line(command_id: str, entry: Executed) -> bytes:
    body = {
        "command_id": command_id,
        "expires_at": entry.expires_at.isoformat(),
        "status": entry.status,
        "master": entry.master,
    }
    return (json.dumps(body) + "\n").encode()


def _parse(line: bytes) -> tuple[str, Executed] | None:
    """A line's entry; None for a line that is not one (a torn line of a crash)."""
    try:
        body = json.loads(line)
        expires_at = datetime.datetime.fromisoformat(body["expires_at"])
        return str(body["command_id"]), Executed(expires_at, str(body["status"]), str(body.get("master", "")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
