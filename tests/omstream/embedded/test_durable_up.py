"""`omstream up` keeps what its broker acknowledged: events acknowledged but not yet stored when `up`
is killed are stored and counted by the next run, and the broker and its store may be killed under a
running `up` without losing any; windows open across those restarts end exact."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from omstream.embedded.supervisor import start_time
from tests.expected import (
    behavior_totals,
    daily_activity,
    distinct_valid_rows,
    funnel_daily,
    hourly_activity,
)
from tests.omstream.embedded.test_up import LIVE, TIMEZONE, halves, recent_events, replay, report
from tests.up import omstream_up, services, until


def stored(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "behavior_totals": figures["behavior_totals"],
        "daily": figures["daily"],
        "hourly": figures["realtime"]["hourly"],
        "funnel_daily": figures["realtime"]["funnel_daily"],
    }


def kill(state: Path, name: str) -> None:
    """SIGKILL one service of the running `up`, and wait until it runs again."""
    doomed = services(state)[name]
    os.kill(doomed["pid"], signal.SIGKILL)
    until(lambda: services(state)[name]["pid"] != doomed["pid"], 30, f"{name} was not restarted")


@pytest.mark.integration
def test_acknowledged_events_survive_kill_9_of_up_of_the_broker_and_of_its_store(tmp_path: Path) -> None:
    state = tmp_path / "state"
    data = recent_events(tmp_path, events=6_000)
    rows = distinct_valid_rows(data, LIVE)
    expected = {
        "behavior_totals": behavior_totals(rows),
        "daily": daily_activity(rows, TIMEZONE),
        "hourly": hourly_activity(rows, TIMEZONE),
        "funnel_daily": funnel_daily(rows, TIMEZONE),
    }
    first, second = halves(data)

    with omstream_up(state, tmp_path / "up-1.log") as up:
        # the sink stopped: the first half is acknowledged by the broker and stored nowhere else
        sink = services(state)["sink"]["pid"]
        os.kill(sink, signal.SIGSTOP)
        replay(state, first)
        children = services(state)
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
    until(
        lambda: all(start_time(child["pid"]) != child["start_time"] for child in children.values()),
        10,
        f"children of the killed up still run: {children}",
    )

    with omstream_up(state, tmp_path / "up-2.log"):
        kill(state, "store")
        kill(state, "broker")
        replay(state, second)
        until(lambda: stored(report(state)) == expected, 180, "the acknowledged events were not all stored")
