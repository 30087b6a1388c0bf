"""`omstream report` on the real Taobao sample equals an independent computation over the same file."""

from __future__ import annotations

from pathlib import Path

import clickhouse
from omstream.settings import Settings
from report import build_report
from stream.events import Event
from stream.sinks.clickhouse import insert_events
from stream.sources.taobao import read_csv
from tests.expected import TAOBAO_WINDOW, distinct_valid_rows, figures_of, report_figures

TZ = "Asia/Shanghai"


def test_report_on_the_real_sample_equals_an_independent_computation(
    tmp_path: Path, taobao_sample: Path
) -> None:
    settings = Settings(state_dir=tmp_path, kafka_bootstrap="", clickhouse_dsn="").with_window(TAOBAO_WINDOW)
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        clickhouse.migrate(client)
        parsed = read_csv(taobao_sample, settings.accept_range)
        insert_events(client, [event for event in parsed if isinstance(event, Event)])
        report = build_report(client, settings.timezone, settings.funnel_conversion_seconds)
    finally:
        client.close()
    rows = distinct_valid_rows(taobao_sample, settings.accept_range)
    assert figures_of(report) == report_figures(rows, TZ)
