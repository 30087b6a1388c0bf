"""`omstream report` on the real Taobao sample equals an independent computation over the same file."""

from __future__ import annotations

from pathlib import Path

import clickhouse
from omstream.report import build_report
from omstream.settings import Settings
from stream.events import Event
from stream.sinks.clickhouse import insert_events
from stream.sources.taobao import read_csv
from tests.expected import (
    behavior_totals,
    category_pareto,
    daily_activity,
    distinct_valid_rows,
    hour_of_day_activity,
    purchase_frequency,
    repurchase_rate,
    retention_d1,
)

TZ = "Asia/Shanghai"


def test_report_on_the_real_sample_equals_an_independent_computation(
    tmp_path: Path, taobao_sample: Path
) -> None:
    settings = Settings(state_dir=tmp_path, kafka_bootstrap="", clickhouse_dsn="")
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        clickhouse.migrate(client)
        parsed = read_csv(taobao_sample, settings.accept_range)
        insert_events(client, [event.model_dump() for event in parsed if isinstance(event, Event)])
        report = build_report(client, settings)
    finally:
        client.close()
    rows = distinct_valid_rows(taobao_sample, settings.accept_range)
    assert report["behavior_totals"] == behavior_totals(rows)
    assert report["daily"] == daily_activity(rows, TZ)
    assert report["hourly"] == hour_of_day_activity(rows, TZ)
    assert report["purchase_frequency"] == purchase_frequency(rows)
    pareto = report["category_pareto"]
    assert {key: pareto[key] for key in ("categories_with_sales", "categories_for_80pct")} == category_pareto(
        rows
    )
    retention = [{key: row[key] for key in ("cohort_date", "users", "d1")} for row in report["retention"]]
    assert retention == retention_d1(rows, TZ)
    expected_repurchase = repurchase_rate(rows, TZ)
    assert {key: report["repurchase_rate"][key] for key in expected_repurchase} == expected_repurchase
