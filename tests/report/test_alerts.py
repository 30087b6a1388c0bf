"""`omstream alerts` and the report's alerts section, over alerts stored as the sink stores them."""

from __future__ import annotations

import json
from pathlib import Path

import clickhouse
from omstream.settings import Settings
from report import Report, build_report, render_text, write_html
from stream.alerts import CLOSED, DOWN, OPEN, UP, Alert, alert_id
from stream.alerts.records import AlertRecord, alert_rows, encode_alert
from stream.sinks.clickhouse import insert_rows
from tests.report.test_report import omstream_cli

DEC_2 = 1_512_144_000  # 2017-12-02 00:00 China time


def alert(metric: str, direction: str, status: str, start: int) -> AlertRecord:
    identity = alert_id(metric, direction, start)
    body = Alert(identity, metric, direction, status, start, start + 900, 120.0, 40.0, 9.0, start + 120,
                 int(status == CLOSED))  # fmt: skip
    return AlertRecord(body, raised_at=1_700_000_000.5)


def stored_alerts(state: Path) -> Report:
    """Two alerts, the spike's open record stored before its closed one (as the sink gets them)."""
    settings = Settings(state_dir=state, kafka_bootstrap="", clickhouse_dsn="")
    records = [
        alert("pv", UP, OPEN, DEC_2 + 600),
        alert("buy", DOWN, OPEN, DEC_2 + 7_200),
        alert("pv", UP, CLOSED, DEC_2 + 600),
    ]
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        clickhouse.migrate(client)
        for record in records:  # one insert each: the table, not one batch, holds an alert once
            insert_rows(client, "alerts", alert_rows(encode_alert(record)))
        return build_report(client, settings.timezone, settings.funnel_conversion_seconds)
    finally:
        client.close()


def test_the_report_lists_each_alert_once_newest_first_in_every_format(tmp_path: Path) -> None:
    report = stored_alerts(tmp_path / "state")
    alerts = report.as_json()["realtime"]["alerts"]
    assert [(a["metric"], a["status"]) for a in alerts] == [("buy", OPEN), ("pv", CLOSED)]
    assert alerts[1]["window_start"] == "2017-12-02T00:10:00+08:00"
    assert alerts[1]["raised_at"] == "2023-11-15T06:13:20.500000+08:00"
    assert "Anomaly alerts" in render_text(report) and "2017-12-02T02:00:00+08:00" in render_text(report)
    html = write_html(report, tmp_path / "html").read_text()
    assert "Anomaly alerts, real time" in html and "2017-12-02T00:25:00+08:00" in html


def test_cli_lists_alerts_as_json_within_a_range_and_open_ones(tmp_path: Path) -> None:
    state = tmp_path / "state"
    stored_alerts(state)
    done = omstream_cli("alerts", "--json", state=state)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(a["metric"], a["direction"]) for a in listed] == [("buy", DOWN), ("pv", UP)]
    assert set(listed[0]) >= {"metric", "direction", "window_start", "window_end", "observed", "expected",
                              "score", "raised_at", "event_time_at_raise"}  # fmt: skip
    assert listed[1]["event_time_at_raise"] == "2017-12-02T00:12:00+08:00"
    early = omstream_cli(
        "alerts", "--json", "--from", "2017-12-02 00:00", "--to", "2017-12-02 01:00", state=state
    )
    assert [a["metric"] for a in json.loads(early.stdout)] == ["pv"]
    still_open = omstream_cli("alerts", "--json", "--open", state=state)
    assert [a["metric"] for a in json.loads(still_open.stdout)] == ["buy"]
    text = omstream_cli("alerts", state=state)
    assert text.returncode == 0 and text.stdout.splitlines()[0].startswith("2017-12-02T02:00:00+08:00")
    bad = omstream_cli("alerts", "--from", "yesterday", state=state)
    assert bad.returncode != 0 and "yesterday" in bad.stderr
