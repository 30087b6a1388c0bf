"""Alert records on the topic and as table rows."""

from __future__ import annotations

import datetime

import orjson

from stream.alerts import Alert, alert_id
from stream.alerts.records import AlertRecord, alert_rows, decode_alert, encode_alert

ALERT = Alert(
    alert_id("pv", "up", 1_512_000_000),
    "pv",
    "up",
    "open",
    1_512_000_000,
    1_512_000_120,
    900.5,
    300.0,
    12.5,
    1_512_000_120,
    0,
)


def test_a_record_round_trips_with_iso_times_that_carry_their_offset() -> None:
    record = AlertRecord(ALERT, 1_700_000_000.25)
    body = orjson.loads(encode_alert(record))
    assert body["window_start"] == "2017-11-30T00:00:00+00:00"
    assert body["raised_at"] == "2023-11-14T22:13:20.250000+00:00"
    assert decode_alert(encode_alert(record)) == record


def test_rows_are_one_per_record_and_none_for_garbage() -> None:
    (row,) = alert_rows(encode_alert(AlertRecord(ALERT, 1_700_000_000.0)))
    assert row.window_start == datetime.datetime(2017, 11, 30, tzinfo=datetime.UTC)
    assert (row.alert_id, row.metric, row.direction, row.version) == (ALERT.alert_id, "pv", "up", 0)
    assert alert_rows(b"not json") == alert_rows(b'{"metric": "pv"}') == []


def test_ids_depend_on_metric_direction_and_start_only() -> None:
    assert alert_id("pv", "up", 60) == alert_id("pv", "up", 60)
    assert (
        len(
            {
                alert_id("pv", "up", 60),
                alert_id("pv", "down", 60),
                alert_id("uv", "up", 60),
                alert_id("pv", "up", 120),
            }
        )
        == 4
    )
