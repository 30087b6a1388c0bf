"""Helpers of the tests that run `omstream up` (a real process tree in a temporary state dir) and
commands against it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def environment(state: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMSTREAM_STATE_DIR": str(state),
        "KAFKA_BOOTSTRAP": "",
        "CLICKHOUSE_DSN": "",
        **extra,
    }


def omstream(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "omstream", *args]
    return subprocess.run(command, env=environment(state), capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def omstream_up(state: Path, log: Path, *options: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    """`omstream up` until its banner; stopped (by its PID) after the block if still running."""
    command = [sys.executable, "-m", "omstream", "up", *options]
    with log.open("w") as errors:
        up = subprocess.Popen(
            command, env=environment(state, **env), stdout=subprocess.PIPE, stderr=errors, text=True
        )
    try:
        banner = up.stdout.readline() if up.stdout else ""
        assert "ClickHouse (read-only HTTP)" in banner, log.read_text()
        yield up
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)  # as Ctrl-C, even where SIGINT was handed down ignored
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()


def services(state: Path) -> dict[str, Any]:
    """The services of the `omstream up` running on `state`, by name: their PIDs and start times."""
    return dict(json.loads((state / "up.json").read_text())["services"])


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it is true (returned), or fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
    return result
