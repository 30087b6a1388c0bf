"""`omstream up` as a service: live events by default, readable while it runs, a killed service
restarted, children that die with it, and a run that did not stop found and cleaned up at the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from omstream.embedded import supervisor
from omstream.embedded.running import reader_dsn
from omstream.embedded.supervisor import (
    AlreadyRunning,
    Service,
    ServiceFailed,
    Supervisor,
    claim_state_dir,
    start_time,
)
from omstream.settings import Settings
from stream.events import RecentRange
from stream.kafka import Partitioner
from stream.sources.generator import generate_csv
from stream.sources.taobao import TAOBAO_END, TAOBAO_START, sort_by_time
from tests.expected import (
    TAOBAO_WINDOW,
    behavior_totals,
    daily_activity,
    distinct_valid_rows,
    hourly_activity,
    partition_windows,
)
from tests.pipeline import differences, stored_windows
from tests.up import environment, omstream, omstream_up, services, until

TIMEZONE = "Asia/Shanghai"
LIVE = RecentRange(back=7 * 86_400, ahead=300)  # the settings' default range
SPAN_S = 240  # the generated days squeezed into the last minutes: well within the windows' grace


def recent_events(folder: Path, events: int) -> Path:
    """Generated events (with dirty rows) in time order, their days squeezed into the last few minutes;
    the dirty rows' times stay as they were (outside the accepted range)."""
    generate_csv(folder / "events.csv", events=events, seed=5, dirty=True)
    sort_by_time(folder / "events.csv", folder / "ordered.csv")
    start = int(time.time()) - SPAN_S - 30
    scale = SPAN_S / (TAOBAO_END - TAOBAO_START)
    lines = []
    for line in (folder / "ordered.csv").read_text().splitlines():
        fields = line.split(",")
        if (
            len(fields) == 5
            and fields[4].lstrip("-").isdigit()
            and TAOBAO_START <= int(fields[4]) < TAOBAO_END
        ):
            fields[4] = str(start + int((int(fields[4]) - TAOBAO_START) * scale))
        lines.append(",".join(fields))
    (folder / "recent.csv").write_text("\n".join(lines) + "\n")
    return folder / "recent.csv"


def halves(path: Path) -> tuple[Path, Path]:
    lines = path.read_text().splitlines(keepends=True)
    first, second = path.with_suffix(".1.csv"), path.with_suffix(".2.csv")
    first.write_text("".join(lines[: len(lines) // 2]))
    second.write_text("".join(lines[len(lines) // 2 :]))
    return first, second


def replay(state: Path, path: Path) -> None:
    done = omstream(state, "replay", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["failed"] == 0


def report(state: Path) -> dict[str, Any]:
    done = omstream(state, "report", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.integration
def test_up_restarts_a_killed_worker_answers_reports_while_running_and_dies_with_its_children(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    data = recent_events(tmp_path, events=8_000)
    rows = distinct_valid_rows(data, LIVE)
    expected = {
        "behavior_totals": behavior_totals(rows),
        "daily": daily_activity(rows, TIMEZONE),
        "hourly": hourly_activity(rows, TIMEZONE),
    }
    first, second = halves(data)

    def stored(figures: dict[str, Any]) -> dict[str, Any]:
        return {
            "behavior_totals": figures["behavior_totals"],
            "daily": figures["daily"],
            "hourly": figures["realtime"]["hourly"],
        }

    with omstream_up(state, tmp_path / "up-1.log") as up:
        replay(state, first)
        kill_worker(state)
        replay(state, second)
        until(lambda: stored(report(state)) == expected, 120, "the running stack did not report the input")
        children = services(state)
        os.kill(up.pid, signal.SIGKILL)
        up.wait()

    def gone() -> bool:
        return all(start_time(child["pid"]) != child["start_time"] for child in children.values())

    until(gone, 10, f"children of the killed up still run: {children}")

    with omstream_up(state, tmp_path / "up-2.log"):
        assert stored(report(state)) == expected
    notes = (tmp_path / "up-2.log").read_text()
    assert f"the previous omstream up here (pid {up.pid}) ended without stopping its services" in notes


def kill_worker(state: Path) -> None:
    """SIGKILL the worker of the `omstream up` on `state`, and wait until `up` has started another."""
    doomed = services(state)["worker"]["pid"]
    os.kill(doomed, signal.SIGKILL)
    until(lambda: services(state)["worker"]["pid"] != doomed, 30, "the worker was not restarted")


@pytest.mark.integration
def test_up_restarts_a_worker_killed_in_a_paced_live_stream_and_every_window_stays_exact(
    tmp_path: Path,
) -> None:
    """Events stamped now, paced as a live stream the worker keeps up with; the worker is killed twice
    mid-stream and `up` restarts it on its own. Every window row (minute, hour, day, hour and day
    funnels, final flag included: the events span 4 minutes, so none is final yet) then equals the
    plain-Python computation, read over the running sink's query endpoint."""
    state = tmp_path / "state"
    data = recent_events(tmp_path, events=8_000)
    rows = distinct_valid_rows(data, LIVE)
    want = partition_windows(rows, Partitioner(4), TIMEZONE, grace=600)
    with omstream_up(state, tmp_path / "up.log"):
        command = [sys.executable, "-m", "omstream", "replay", str(data), "--rate", "1000"]
        with subprocess.Popen(command, env=environment(state), stdout=subprocess.DEVNULL) as paced:
            for _ in range(2):
                time.sleep(3)
                kill_worker(state)
            assert paced.wait(120) == 0
        dsn = reader_dsn(Settings(state_dir=state, kafka_bootstrap="", clickhouse_dsn=""))

        def mismatches() -> list[Any]:
            got_windows, got_funnels, totals = stored_windows(dsn)
            wrong = differences(got_windows, want[0]) + differences(got_funnels, want[1])
            return wrong + ([("totals", totals)] if totals != behavior_totals(rows) else [])

        until(lambda: not mismatches(), 120, "the windows did not match the input")


@pytest.mark.integration
def test_a_historical_file_is_refused_by_a_live_stack_and_taken_by_one_on_its_window(
    tmp_path: Path, taobao_sample: Path
) -> None:
    state = tmp_path / "state"
    with omstream_up(state, tmp_path / "up.log"):
        done = omstream(state, "replay", str(taobao_sample))
    assert done.returncode == 1
    [error] = [line for line in done.stderr.splitlines() if line.strip()]
    assert "2017-11-25 00:00 to 2017-12-04 00:00 (Asia/Shanghai)" in error
    assert "--live" in error and "omstream up --window-of" in error

    with omstream_up(state, tmp_path / "up-window.log", "--window-of", str(taobao_sample)):
        done = omstream(state, "replay", str(taobao_sample), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rejected"] == {"out_of_window": 1}  # its one row of 2017-09-11
        rows = distinct_valid_rows(taobao_sample, TAOBAO_WINDOW)
        until(
            lambda: report(state)["behavior_totals"] == behavior_totals(rows), 60, "the sample was not stored"
        )


def test_a_second_run_on_a_state_dir_is_refused_naming_the_first(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_STATE_DIR, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        with (
            pytest.raises(AlreadyRunning, match=rf"omstream up \(pid {holder.pid}\) is already running"),
            claim_state_dir(tmp_path, "up", print),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


HOLD_STATE_DIR = """
import sys, time
from pathlib import Path
from omstream.embedded.supervisor import claim_state_dir
with claim_state_dir(Path(sys.argv[1]), "up", print):
    print("holding", flush=True)
    time.sleep(60)
"""


def test_the_services_a_dead_run_left_are_stopped_and_named_in_one_line(tmp_path: Path) -> None:
    leftover = subprocess.Popen(["sleep", "60"], process_group=0)
    try:
        status = {
            "pid": 999_999_999,
            "start_time": 1,
            "command": "up",
            "services": {
                "sink": {"pid": leftover.pid, "start_time": start_time(leftover.pid)},
                "worker": {"pid": 999_999_998, "start_time": 1},  # gone already
            },
        }
        (tmp_path / "up.json").write_text(json.dumps(status))
        notes: list[str] = []
        with claim_state_dir(tmp_path, "up", notes.append):
            assert leftover.wait(10) == -signal.SIGKILL
        assert notes == [
            "the previous omstream up here (pid 999999999) ended without stopping its services; stopped what "
            f"was still running: sink {leftover.pid} (events its broker had not stored are lost)"
        ]
        assert not (tmp_path / "up.json").exists()
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


def exiting(name: str, code: int, folder: Path, critical: bool = False) -> Service:
    command = [sys.executable, "-c", f"raise SystemExit({code})"]
    return Service(name, command, dict(os.environ), folder / f"{name}.log", critical)


def test_a_service_that_keeps_crashing_is_restarted_with_backoff_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "FIRST_BACKOFF_S", 0.05)
    said: list[str] = []
    run = Supervisor(tmp_path, "up", said.append)
    run.start(exiting("flaky", 3, tmp_path))
    try:
        run.watch(until=lambda: any("keeps crashing" in line for line in said))
    finally:
        run.stop()
    exits = [line for line in said if line.startswith("flaky exited with code 3")]
    assert [line.split("restarting in ")[1] for line in exits] == ["0.05 s", "0.1 s", "0.2 s"]
    assert said[-1].startswith(f"flaky keeps crashing ({supervisor.CRASHING_AFTER} exits in a row")
    assert "restarting in 0.4 s" in said[-1]


def test_a_critical_service_that_exits_stops_the_run(tmp_path: Path) -> None:
    run = Supervisor(tmp_path, "up", print)
    run.start(exiting("broker", 2, tmp_path, critical=True))
    with pytest.raises(ServiceFailed, match="broker exited with code 2"):
        run.watch()
    run.stop()
