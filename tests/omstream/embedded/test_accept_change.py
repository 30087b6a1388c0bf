"""`omstream up` restarted on a state directory with another accepted range: the events stored stay,
their windows stay exact, the new range applies to what comes next and is said in one line; a range
whose events would all be too late for the windows already there is refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.expected import behavior_totals, daily_activity, distinct_valid_rows, hourly_activity
from tests.omstream.embedded.test_up import LIVE, TIMEZONE, recent_events, replay, report
from tests.up import environment, omstream, omstream_up, until


def stored(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "behavior_totals": figures["behavior_totals"],
        "daily": figures["daily"],
        "hourly": figures["realtime"]["hourly"],
    }


@pytest.mark.integration
def test_a_restart_with_another_range_keeps_what_was_stored_and_applies_the_new_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    data = recent_events(tmp_path, events=3_000)
    rows = distinct_valid_rows(data, LIVE)
    totals = behavior_totals(rows)
    expected: dict[str, Any] = {
        "behavior_totals": totals,
        "daily": daily_activity(rows, TIMEZONE),
        "hourly": hourly_activity(rows, TIMEZONE),
    }
    with omstream_up(state, tmp_path / "up-1.log"):
        replay(state, data)
        until(lambda: stored(report(state)) == expected, 120, "the events were not stored")

    # the Taobao days end years before the windows here: every event of them would be late
    taobao_days = {
        "OMSTREAM_ACCEPT_FROM": "2017-11-25T00:00+08:00",
        "OMSTREAM_ACCEPT_TO": "2017-12-04T00:00+08:00",
    }
    command = [sys.executable, "-m", "omstream", "up"]
    refused = subprocess.run(
        command, env=environment(state, **taobao_days), capture_output=True, text=True, timeout=90
    )
    assert refused.returncode == 1
    [error] = [line for line in refused.stderr.splitlines() if line.strip()]
    assert error.startswith(f"Error: the windows in {state} have reached "), error
    assert "2017-11-25 00:00 to 2017-12-04 00:00 (Asia/Shanghai)" in error
    assert "another state directory (OMSTREAM_STATE_DIR)" in error

    # a narrower live range: two days back instead of seven
    two_days_ago = int(time.time()) - 2 * 86_400
    newer = tmp_path / "newer.csv"
    newer.write_text(
        "".join(f"{9_000_000 + n},1,1,pv,{two_days_ago}\n" for n in range(5))
        + "".join(f"{9_100_000 + n},1,1,pv,{int(time.time()) - 60}\n" for n in range(7))
    )
    with omstream_up(state, tmp_path / "up-2.log", OMSTREAM_ACCEPT_DAYS_BACK="1"):
        notes = (tmp_path / "up-2.log").read_text()
        assert "the accepted range changed (it was the last 7 days to 5 minutes ahead of the clock)" in notes
        assert stored(report(state)) == expected  # kept, windows as they were
        done = omstream(state, "replay", str(newer), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rejected"] == {"out_of_window": 5}
        pv = totals["pv"] + 7
        until(lambda: report(state)["behavior_totals"]["pv"] == pv, 60, "the accepted events were not stored")
