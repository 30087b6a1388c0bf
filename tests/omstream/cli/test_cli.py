import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from stream.sources.generator import generate_csv
from tests.expected import (
    TAOBAO_WINDOW,
    behavior_totals,
    daily_activity,
    distinct_valid_rows,
    funnel_daily,
    hourly_activity,
)
from tests.up import until


def omstream(*args: str, state: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMSTREAM_STATE_DIR": str(state), "KAFKA_BOOTSTRAP": "", **env}
    return subprocess.run(
        [sys.executable, "-m", "omstream", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_help_everywhere(tmp_path: Path) -> None:
    commands: tuple[list[str], ...] = (
        [],
        ["demo"],
        ["up"],
        ["replay"],
        ["generate"],
        ["report"],
        ["worker"],
        ["sink"],
        ["bench", "ingest"],
        ["control"],
        ["master"],
        ["ops"],
        ["ops", "keygen"],
        ["ops", "register"],
        ["ops", "bootstrap"],
        ["ops", "run"],
        ["ops", "history"],
    )
    for command in commands:
        done = omstream(*command, "--help", state=tmp_path)
        assert done.returncode == 0 and "Usage:" in done.stdout, command


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    done = omstream("--version", state=tmp_path)
    assert done.returncode == 0 and done.stdout == f"omstream {version('omstream')}\n"


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    assert "no such file" in one_line_error(omstream("replay", str(tmp_path / "nope.csv"), state=tmp_path))
    assert "no such file" in one_line_error(omstream("demo", "--data", "nope.csv", state=tmp_path))


def test_unreachable_broker_is_one_clear_line(tmp_path: Path) -> None:
    data = tmp_path / "a.csv"
    data.write_text("1,2,3,pv,1511544070\n")
    error = one_line_error(omstream("replay", str(data), state=tmp_path, KAFKA_BOOTSTRAP="127.0.0.1:9"))
    assert "unreachable at 127.0.0.1:9" in error
    assert "no Kafka broker" in one_line_error(omstream("replay", str(data), state=tmp_path))


def test_report_before_any_data_is_one_line_saying_how_to_get_some(tmp_path: Path) -> None:
    for format_ in ("text", "json", "html"):
        done = omstream("report", "--format", format_, state=tmp_path / "fresh", CLICKHOUSE_DSN="")
        error = one_line_error(done)
        assert "no events yet" in error and "omstream demo" in error and "omstream replay" in error, format_


@pytest.mark.integration
def test_demo_reports_exactly_what_an_independent_computation_finds(tmp_path: Path) -> None:
    data = tmp_path / "events.csv.gz"
    generate_csv(data, events=60_000, seed=11, dirty=True)
    state = tmp_path / "state"
    demo = omstream("demo", "--data", str(data), "--json", state=state)
    assert demo.returncode == 0, demo.stderr
    report = json.loads(omstream("report", "--json", state=state).stdout)
    rows = distinct_valid_rows(data, TAOBAO_WINDOW)
    assert report["behavior_totals"] == behavior_totals(rows)
    assert report["daily"] == daily_activity(rows, "Asia/Shanghai")
    assert report["realtime"]["hourly"] == hourly_activity(rows, "Asia/Shanghai")
    assert report["realtime"]["funnel_daily"] == funnel_daily(rows, "Asia/Shanghai")
    assert json.loads(demo.stdout)["daily"] == report["daily"]
    outcomes = {(r["module"], r["idc"], r["status"]) for r in json.loads(demo.stdout)["ops"]}
    assert ("ping", "bj", "succeeded") in outcomes and ("ping", "sh", "succeeded") in outcomes
    assert ("", "", "rejected") in outcomes  # the unsigned one: its rejection names no module (issue 21)
    assert not any(status in ("failed", "timeout") for _, _, status in outcomes)


@pytest.mark.integration
def test_demo_on_the_real_sample_stores_in_window_rows_and_reports_the_rejected_one(
    tmp_path: Path, taobao_sample: Path
) -> None:
    demo = omstream("demo", "--data", str(taobao_sample), "--json", state=tmp_path / "state")
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout)
    rows = distinct_valid_rows(taobao_sample, TAOBAO_WINDOW)
    assert len(rows) == 4_320
    assert summary["behavior_totals"] == behavior_totals(rows)
    assert summary["realtime"]["hourly"] == hourly_activity(rows, "Asia/Shanghai")
    assert summary["realtime"]["funnel_daily"] == funnel_daily(rows, "Asia/Shanghai")
    assert summary["rejected"] == {"out_of_window": 1}
    assert summary["dead_letters"] == [{"reason": "out_of_window", "source": "replay", "rejected": 1}]


@pytest.mark.integration
def test_up_serves_other_commands_and_stops_everything_it_started_on_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "state"
    environment = {**os.environ, "OMSTREAM_STATE_DIR": str(state), "KAFKA_BOOTSTRAP": ""}
    up = subprocess.Popen(
        [sys.executable, "-m", "omstream", "up"], env=environment, stdout=subprocess.PIPE, text=True
    )
    try:
        banner = up.stdout.readline() if up.stdout else ""
        assert "Kafka at" in banner
        status = json.loads((state / "up.json").read_text())
        data = tmp_path / "a.csv"
        now = int(time.time())
        data.write_text(f"1,2,3,pv,{now}\n1,2,3,like,{now}\n")
        replayed = omstream("replay", str(data), "--json", state=state)
        assert json.loads(replayed.stdout)["rejected"] == {"unknown_behavior": 1}
        ping = omstream(
            *[
                "ops",
                "run",
                "--operator",
                "demo",
                "--idc",
                "bj,sh",
                "--target",
                "*",
                "--module",
                "ping",
                "--wait",
            ],
            state=state,
        )
        assert ping.returncode == 0 and ping.stdout.count(": succeeded") == 2, ping.stdout + ping.stderr
        audited = until(
            lambda: omstream("ops", "history", "--json", state=state).stdout.count('"succeeded"') == 2,
            30,
            "ops history (read through the running sink) did not show both results",
        )
        assert audited
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    for written in ("broker.json", "clickhouse.json", "up.json"):
        assert not (state / written).exists()
    assert {"broker", "sink", "worker", "control", "bj-1"} <= set(status["services"])
    for service in status["services"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(service["pid"], 0)


def test_an_operator_key_is_made_on_the_operator_s_machine_and_only_its_public_half_registered(
    tmp_path: Path,
) -> None:
    laptop, authority, identities = tmp_path / "laptop", tmp_path / "authority", tmp_path / "identities"
    made = omstream("ops", "keygen", "--operator", "alice", state=laptop)
    public = made.stdout.split("public key ")[1].split()[0]
    registered = omstream("ops", "register", "--operator", "alice", "--public-key", public, state=authority)
    assert registered.returncode == 0, registered.stderr
    masters = '{"bj": ["master-bj-1:18861"]}'
    bootstrap = omstream(
        "ops", "bootstrap", "--identities", str(identities), state=authority, OMSTREAM_MASTERS=masters
    )
    assert bootstrap.returncode == 0, bootstrap.stderr
    for service in ("control", "master-bj-1"):
        assert list(json.loads((identities / service / "operators.json").read_text())["operators"]) == [
            "alice"
        ]
    assert not (authority / "keys").exists()  # no private key on the authority, no demo operator
    assert not list(identities.rglob("ca.key"))
