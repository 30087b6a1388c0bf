"""`omstream report` on generated Taobao-shaped data: equal to an independent computation, shows the Taobao
patterns, and renders as text, JSON and HTML (checked in headless Chromium)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from datetime import date
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.path import Path as BezierPath

import clickhouse
from omstream.bench.throughput import load_generated, run_report_bench
from omstream.settings import Settings
from report import Report, ReportOptions, build_report, ltv, render_text, write_html
from report._charts import CHARTS
from report._sankey import NODE_WIDTH
from stream.events import BEHAVIORS
from stream.sources.generator import generate_chunks
from tests.expected import Row, figures_of, report_figures

EVENTS, SEED = 200_000, 5
TZ = "Asia/Shanghai"


def generated_rows(events: int, seed: int) -> set[Row]:
    rows: set[Row] = set()
    for chunk in generate_chunks(events, seed):
        columns = (chunk.user_id, chunk.item_id, chunk.category_id, chunk.behavior, chunk.ts)
        for user, item, category, code, ts in zip(*(column.tolist() for column in columns), strict=True):
            rows.add((user, item, category, BEHAVIORS[code], ts))
    return rows


def report_of_generated(folder: Path, events: int, options: ReportOptions) -> Report:
    settings = Settings(state_dir=folder, kafka_bootstrap="", clickhouse_dsn="")
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        clickhouse.migrate(client)
        load_generated(client, events, SEED)
        return build_report(client, settings.timezone, settings.funnel_conversion_seconds, options)
    finally:
        client.close()  # one chDB directory open per process at a time


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    yield report_of_generated(tmp_path_factory.mktemp("state"), EVENTS, ReportOptions(arpu=0.5, cac=20.0))


def test_json_report_has_every_section(report: Report) -> None:
    assert list(report.as_json()) == [field.name for field in fields(Report)]
    json.dumps(report.as_json(), allow_nan=False)  # strict JSON: no NaN or infinity anywhere


def test_report_equals_an_independent_computation(report: Report) -> None:
    rows = generated_rows(EVENTS, SEED)
    assert figures_of(report) == report_figures(rows, TZ)


def test_generated_data_shows_the_taobao_patterns(report: Report) -> None:
    peak = max(report.hourly, key=lambda row: row["pv"])
    assert peak["hour"] == 21
    assert [row["date"] for row in report.anomalies] == ["2017-12-02"]
    assert "MADs above the median" in report.anomalies[0]["reason"]
    assert 0.05 < report.funnel_counts["cart_per_pv"] < 0.07
    pareto = report.category_pareto
    assert pareto.categories_for_80pct < 0.5 * pareto.categories_with_sales
    buys_per_buyer = report.purchase_frequency.buys_per_buyer
    assert buys_per_buyer is not None and 2.5 < buys_per_buyer < 3.3


def test_report_sections_are_consistent_with_each_other(report: Report) -> None:
    funnel, users = report.funnel_counts, report.funnel_users
    assert [funnel[b] for b in BEHAVIORS] == [report.behavior_totals[b] for b in BEHAVIORS]
    assert users.pv_users >= users.cart_users >= users.buy_users > 0
    assert sum(segment["buyers"] for segment in report.rfm.segments) == report.repurchase_rate.buyers
    assert report.fav_to_buy.overall == funnel["buy"] / funnel["fav"]
    sales = [row["buys"] for row in report.category_sales_top]
    assert sales == sorted(sales, reverse=True)
    rates = [row["pay_rate"] for row in report.category_pay_rate_top]
    assert rates == sorted(rates, reverse=True)
    assert all(row["visitors"] >= ReportOptions().min_visitors for row in report.category_pay_rate_top)
    top_sequences = report.paths.top_sequences
    assert top_sequences[0].sessions >= top_sequences[-1].sessions
    assert report.ltv.lt_days is not None and report.ltv.ltv == pytest.approx(report.ltv.lt_days * 0.5)


def test_ltv_sums_observed_then_fitted_retention_and_finds_the_payback_day() -> None:
    curve = [{"day": day, "rate": 0.5} for day in range(1, 9)]  # flat: the fit stays at 0.5
    result = ltv(curve, arpu=2.0, cac=10.0)
    assert result.lt_days == pytest.approx(1 + 365 * 0.5)
    assert result.ltv == pytest.approx(2.0 * (1 + 365 * 0.5))
    assert result.payback_days == 8  # 1 + 0.5 * 8 active days earn 2 * 5 = 10
    decaying = [{"day": day, "rate": 0.6 - 0.2 * math.log(day)} for day in range(1, 9)]
    fitted = ltv(decaying, arpu=None, cac=None)
    assert fitted.fit is not None
    assert (fitted.fit.intercept, fitted.fit.log_slope) == pytest.approx((0.6, -0.2))
    assert fitted.lt_days is not None and fitted.lt_days < 1 + 20
    assert fitted.ltv is None and fitted.payback_days is None


def test_text_report_has_the_main_tables(report: Report) -> None:
    text = render_text(report)
    for title in (
        "Daily activity",
        "PV anomalies",
        "Hour of day",
        "Funnel (users",
        "Retention by cohort",
        "RFM",
    ):
        assert title in text
    assert "2017-12-02" in text


def test_category_rows_have_no_item_column_and_item_rows_do(report: Report, tmp_path: Path) -> None:
    for rows in (report.category_sales_top, report.category_pay_rate_top):
        assert rows and all("item_id" not in row for row in rows)
    assert report.items.sales_top and all(row["item_id"] > 0 for row in report.items.sales_top)
    text = render_text(report)
    assert text.split("Top categories by sales\n")[1].split()[:2] == ["category_id", "buys"]
    items = text.split(f"Top items of category {report.items.category_id} by sales\n")[1]
    assert items.split()[:3] == ["category_id", "item_id", "buys"]
    html = write_html(report, tmp_path / "html").read_text()
    assert "<th>category_id</th><th>buys</th>" in html
    assert "<th>category_id</th><th>item_id</th><th>buys</th>" in html


def test_paths_chart_is_a_sankey_of_the_top_sequences(report: Report) -> None:
    axes = Figure().add_subplot()
    CHARTS["paths"](report, axes)
    bands = [patch.get_path() for patch in axes.patches if isinstance(patch, PathPatch)]
    nodes = [patch for patch in axes.patches if isinstance(patch, Rectangle)]
    paths = [[*sequence.path.split(" > "), None] for sequence in report.paths.top_sequences]  # None: its end
    flows = {(step, *move) for path in paths for step, move in enumerate(pairwise(path))}
    assert len(bands) == len(flows)
    assert all(BezierPath.CURVE4 in np.asarray(band.codes) for band in bands)
    # each session of step 1 goes on or ends: the bands leaving the first column are as high as its nodes
    first_column = [node.get_height() for node in nodes if node.get_x() == 0]
    outlines = [np.asarray(band.vertices) for band in bands]
    leaving = [outline[0, 1] - outline[7, 1] for outline in outlines if outline[0, 0] == NODE_WIDTH]
    assert sum(leaving) == pytest.approx(sum(first_column))


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")
    return binary


def test_html_report_renders_its_charts_in_headless_chromium(report: Report, tmp_path: Path) -> None:
    page = write_html(report, tmp_path / "html")
    assert sorted(path.stem for path in page.parent.glob("*.png")) == sorted(CHARTS)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    browser = [_chromium(), *flags, "--enable-logging=stderr", "--v=0", "--window-size=1100,1600"]
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert f'data-charts-rendered="{len(CHARTS)}/{len(CHARTS)}"' in dom.stdout, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*browser, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=60, check=True
    )
    pixels = imread(shot)
    assert pixels.shape[:2] == (1600, 1100)
    assert pixels[..., :3].std() > 0.05  # charts and tables drawn, not a blank page


def omstream_cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "OMSTREAM_STATE_DIR": str(state),
        "KAFKA_BOOTSTRAP": "",
        "CLICKHOUSE_DSN": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "omstream", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_report_formats_and_date_range(tmp_path: Path) -> None:
    state = tmp_path / "state"
    report_of_generated(state, 20_000, ReportOptions())  # loads the data, then frees the chDB directory
    ranged = omstream_cli(
        "report", "--format", "json", "--from", "2017-11-26", "--to", "2017-11-27", state=state
    )
    assert ranged.returncode == 0, ranged.stderr
    result = json.loads(ranged.stdout)
    assert [row["date"] for row in result["daily"]] == ["2017-11-26", "2017-11-27"]
    assert result["range"] == {"from": "2017-11-26", "to": "2017-11-27"}
    assert sum(row["pv"] for row in result["daily"]) == result["behavior_totals"]["pv"]
    html = omstream_cli(
        "report", "--format", "html", "--out", str(tmp_path / "out"), "--arpu", "1", state=state
    )
    assert html.returncode == 0, html.stderr
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "daily.png").is_file()
    text = omstream_cli("report", state=state)
    assert text.returncode == 0 and "Retention by cohort" in text.stdout


def test_report_bench_times_a_tiny_run() -> None:
    result = run_report_bench(5_000, "Asia/Shanghai", 86_400)
    assert result["events"] == 5_000
    assert result["report_s"] > 0 and result["load_events_per_s"] > 0 and result["report_bytes"] > 1_000


def test_an_empty_database_reports_empty_sections_in_every_format(tmp_path: Path) -> None:
    result = report_of_generated(tmp_path / "state", 0, ReportOptions(arpu=1.0, cac=5.0))
    json.dumps(result.as_json(), allow_nan=False)
    assert result.daily == [] and result.retention == [] and result.ltv.ltv is None
    text = render_text(result)
    assert "Daily activity" in text
    assert write_html(result, tmp_path / "html").is_file()
    # no days to report on, rather than the epoch that the empty database's min(ts) would give
    assert result.range is None and result.as_json()["range"] is None
    assert text.startswith("No data") and "1970" not in text
    assert "1970" not in (tmp_path / "html" / "report.html").read_text()


def test_a_range_asked_for_is_reported_even_without_data(tmp_path: Path) -> None:
    days = ReportOptions(date_from=date(2017, 11, 26), date_to=date(2017, 11, 27))
    result = report_of_generated(tmp_path / "state", 0, days)
    assert result.as_json()["range"] == {"from": "2017-11-26", "to": "2017-11-27"}
