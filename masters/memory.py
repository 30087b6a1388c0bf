"""A master's durable memory of the commands it has started, so that neither a retried dispatch nor a
restart of the master runs a command twice on it.

An append-only file of JSON lines `{"command_id", "expires_at", "status"}`: `started` is written and
fsynced before the command runs, its outcome (`succeeded`, `failed`, `refused`) after. An entry is
kept until its command expires, since a master refuses an expired command anyway; the file is
rewritten without expired entries when it opens and whenever it holds many more lines than entries.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

STARTED = "started"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Executed:
    expires_at: datetime.datetime
    status: str  # `started` until the outcome is known


class ExecutedLog:
    def __init__(self, path: Path, now: Callable[[], datetime.datetime] = _utc_now) -> None:
        self._path = path
        self._now = now
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._entries = {
            command_id: entry for command_id, entry in _read(path).items() if entry.expires_at > now()
        }
        self._file = self._rewrite()
        self._lines = len(self._entries)

    def claim(self, command_id: str, expires_at: datetime.datetime) -> Executed | None:
        """None for a command this master never started, after recording durably that it starts now;
        else what the master knows of it (it must not run again)."""
        with self._lock:
            known = self._entries.get(command_id)
            if known is None:
                self._append(command_id, Executed(expires_at, STARTED), sync=True)
            return known

    def finish(self, command_id: str, status: str) -> None:
        # Not fsynced: losing it in a crash leaves `started`, which a retry reads as "may have run".
        with self._lock:
            self._append(
                command_id, dataclasses.replace(self._entries[command_id], status=status), sync=False
            )

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def _append(self, command_id: str, entry: Executed, sync: bool) -> None:
        self._entries[command_id] = entry
        self._file.write(_line(command_id, entry))
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())
        self._lines += 1
        if self._lines > 2 * len(self._entries) + 1_000:
            self._compact()

    def _compact(self) -> None:
        now = self._now()
        self._entries = {key: entry for key, entry in self._entries.items() if entry.expires_at > now}
        self._file.close()
        self._file = self._rewrite()
        self._lines = len(self._entries)

    def _rewrite(self) -> IO[str]:
        """Replace the file with the live entries (atomically: a crash leaves the old or the new one)."""
        temporary = self._path.with_suffix(".tmp")
        with temporary.open("w") as file:
            file.writelines(_line(command_id, entry) for command_id, entry in self._entries.items())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._path)
        directory = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return self._path.open("a")


def _line(command_id: str, entry: Executed) -> str:
    return (
        json.dumps(
            {"command_id": command_id, "expires_at": entry.expires_at.isoformat(), "status": entry.status}
        )
        + "\n"
    )


def _read(path: Path) -> dict[str, Executed]:
    """The latest entry per command; a torn last line (a crash while writing) is skipped."""
    entries: dict[str, Executed] = {}
    if not path.exists():
        return entries
    for line in path.read_text().splitlines():
        try:
            body = json.loads(line)
            entry = Executed(datetime.datetime.fromisoformat(body["expires_at"]), str(body["status"]))
            entries[str(body["command_id"])] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return entries
