"""Builds `grafana/dashboards/*.json` from the SQL catalogue in `clickhouse/queries`.

Each ClickHouse panel runs a catalogue query, translated mechanically: the server-side parameters that the
report binds (`{name:Type}`) become the Grafana expressions below (time picker, template variables) or a
literal fixed by the panel. So a metric's SQL exists once; `tests/grafana` fails when the JSON here and
the catalogue drift apart. Run `.venv/bin/python grafana/build_dashboards.py` after changing either.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickhouse import load_query
from stream.sources.taobao import TAOBAO_END, TAOBAO_START

OUT = Path(__file__).resolve().parent / "dashboards"
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "omstream-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "omstream-prometheus"}
# Dashboards open on a recent range and refresh, for a live system; the Taobao data set's days (China
# time), where `omstream demo` and replays of the historical file put their data, are a link away.
LAST_HOUR, LAST_DAY, LAST_WEEK = ({"from": f"now-{span}", "to": "now"} for span in ("1h", "24h", "7d"))
TAOBAO_DAYS = {"from": str(TAOBAO_START * 1000), "to": str((TAOBAO_END - 1) * 1000)}  # epoch ms, as in URLs
TAOBAO_LABEL = "Taobao data set, 2017-11-25 to 2017-12-03"
# Parameters every dashboard binds the same way: the time zone variable and the time picker's days.
GRAFANA_PARAMETERS = {
    "tz": "'${tz}'",
    "from": "toDate($__fromTime, '${tz}')",
    "to": "toDate($__toTime, '${tz}')",
    "category": "${category}",
    "idc": "'${idc}'",
    "since": "$__fromTime",
    "until": "$__toTime",
}
CATEGORIES = {"level": "category", "category": 0}  # sales_stats over every category
_PARAMETER = re.compile(r"\{(\w+):(\w+)\}")
_WIDTH = 24


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # Grafana panel type
    query: str = ""  # catalogue query name (ClickHouse panels)
    literals: dict[str, Any] = field(default_factory=dict)  # parameters this panel fixes
    promql: tuple[tuple[str, str], ...] = ()  # (expression, legend) for Prometheus panels
    width: int = 12
    time_series: bool = False


def grafana_sql(name: str, literals: dict[str, Any]) -> str:
    """The catalogue query `name` with its parameters bound to Grafana expressions or the panel's literals."""

    def bind(match: re.Match[str]) -> str:
        parameter = match.group(1)
        if parameter in literals:
            value = literals[parameter]
            return f"'{value}'" if isinstance(value, str) else str(value)
        return GRAFANA_PARAMETERS[parameter]

    return _PARAMETER.sub(bind, load_query(name)).strip()


def _targets(panel: Panel) -> list[dict[str, Any]]:
    if panel.promql:
        return [
            {"refId": chr(ord("A") + index), "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}
            for index, (expr, legend) in enumerate(panel.promql)
        ]
    return [
        {
            "refId": "A",
            "datasource": CLICKHOUSE,
            "editorType": "sql",
            "queryType": "timeSeries" if panel.time_series else "table",
            "format": 0 if panel.time_series else 1,
            "rawSql": grafana_sql(panel.query, panel.literals),
        }
    ]


def _panels(panels: list[Panel]) -> list[dict[str, Any]]:
    laid_out, x, y = [], 0, 0
    for index, panel in enumerate(panels, 1):
        if x + panel.width > _WIDTH:
            x, y = 0, y + 8
        laid_out.append(
            {
                "id": index,
                "title": panel.title,
                "type": panel.kind,
                "datasource": PROMETHEUS if panel.promql else CLICKHOUSE,
                "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
                "targets": _targets(panel),
            }
        )
        x += panel.width
    return laid_out


def _timezone_variable() -> dict[str, Any]:
    zone = "Asia/Shanghai"
    return {"name": "tz", "label": "time zone", "type": "constant", "query": zone, "hide": 2,
            "current": {"text": zone, "value": zone}}  # fmt: skip


def _query_variable(name: str, label: str, sql: str, include_all: bool = False) -> dict[str, Any]:
    variable: dict[str, Any] = {
        "name": name, "label": label, "type": "query", "datasource": CLICKHOUSE, "query": sql,
        "definition": sql, "refresh": 2, "includeAll": include_all, "multi": False,
    }  # fmt: skip
    if include_all:
        variable["allValue"] = "*"  # the catalogue's "every IDC"
    return variable


def _taobao_link(uid: str) -> dict[str, Any]:
    """This dashboard on the Taobao data set's days: the historical window one click away."""
    return {
        "title": TAOBAO_LABEL,
        "type": "link",
        "icon": "dashboard",
        "url": f"/d/{uid}?from={TAOBAO_DAYS['from']}&to={TAOBAO_DAYS['to']}",
        "tooltip": "where `omstream demo` and replays of the historical file put their data",
        "keepTime": False,
        "includeVars": True,
        "targetBlank": False,
    }


def _alert_annotations() -> dict[str, Any]:
    """The anomaly alerts of the time range, drawn over every time series of the dashboard."""
    return {
        "name": "Anomaly alerts",
        "enable": True,
        "iconColor": "red",
        "datasource": CLICKHOUSE,
        "target": {
            "refId": "Alerts",
            "datasource": CLICKHOUSE,
            "editorType": "sql",
            "queryType": "table",
            "format": 1,
            "rawSql": grafana_sql("alerts", {"status": "", "limit": 1_000}),
        },
    }


def dashboard(
    uid: str,
    title: str,
    panels: list[Panel],
    variables: list[dict[str, Any]],
    time_range: dict[str, str],
    refresh: str,
    historical: bool = True,
    annotations: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """A dashboard opening on `time_range`, refreshed every `refresh`; `historical`: with a link to the
    Taobao days (not for wall-clock data: metrics, ops commands)."""
    return {
        "uid": uid,
        "title": title,
        "tags": ["omstream"],
        "timezone": "browser",
        "schemaVersion": 39,
        "time": time_range,
        "refresh": refresh,
        "links": [_taobao_link(uid)] if historical else [],
        "templating": {"list": [_timezone_variable(), *variables]},
        **({"annotations": {"list": list(annotations)}} if annotations else {}),
        "panels": _panels(panels),
    }


def _activity() -> dict[str, Any]:
    return dashboard("omstream-activity", "User activity (real time and daily)", [
        Panel("Real-time PV and UV per minute", "timeseries", "realtime_series", {"kind": "minute"},
              width=24, time_series=True),
        Panel("Real-time PV and UV per hour", "timeseries", "realtime_series", {"kind": "hour"},
              time_series=True),
        Panel("Rolling last hour (every minute)", "timeseries", "realtime_series", {"kind": "rolling_1h"},
              time_series=True),
        Panel("Daily PV, UV, new users, buyers", "table", "daily_activity", width=24),
        Panel("By hour of day: PV, UV, pay rate", "barchart", "hourly_activity"),
        Panel("Behaviour mix per day", "barchart", "behavior_daily"),
        Panel("Behaviour totals", "piechart", "behavior_totals"),
        Panel("PV anomalies (> 3 MADs from the median)", "table", "pv_anomalies", {"k": 3.0}),
        Panel("Open anomaly alerts (real time)", "table", "alerts", {"status": "open", "limit": 100},
              width=24),
    ], [], LAST_DAY, "30s", annotations=(_alert_annotations(),))  # fmt: skip


def _funnel_retention() -> dict[str, Any]:
    return dashboard("omstream-funnel-retention", "Funnel, retention and repurchase", [
        Panel("Funnel (events) and conversion ratios", "table", "funnel_counts", width=24),
        Panel("Ordered funnel pv > cart > buy within 24 h (users)", "bargauge", "funnel_users",
              {"window": 86_400}),
        Panel("Real-time ordered funnel per day", "table", "realtime_funnel_daily"),
        Panel("Retention by cohort (d1..d8)", "table", "retention", width=24),
        Panel("Day-N retention over all cohorts", "barchart", "retention_curve", {"days": 30}),
        Panel("Repurchase rate", "stat", "repurchase_rate"),
        Panel("Buys per buyer", "stat", "purchase_frequency"),
        Panel("Buys per buyer: distribution", "barchart", "purchase_frequency_distribution"),
        Panel("RFM segments", "table", "rfm", {"recent_days": 3, "frequent_buys": 2}),
        Panel("Session paths (gap <= 30 min)", "table", "session_paths", {"gap": 1_800}),
    ], [], LAST_WEEK, "1m")  # fmt: skip


def _categories() -> dict[str, Any]:
    top_categories = grafana_sql(
        "sales_stats", {**CATEGORIES, "top": 50, "order": "sales", "min_visitors": 1}
    )
    return dashboard("omstream-categories", "Categories and items", [
        Panel("Top categories by sales", "table", "sales_stats",
              {**CATEGORIES, "top": 20, "order": "sales", "min_visitors": 1}),
        Panel("Top categories by pay rate (>= 50 visitors)", "table", "sales_stats",
              {**CATEGORIES, "top": 20, "order": "pay_rate", "min_visitors": 50}),
        Panel("Category Pareto: cumulative share of sales", "trend", "category_pareto", width=24),
        Panel("Items of category $category by sales", "table", "sales_stats",
              {"level": "item", "top": 20, "order": "sales", "min_visitors": 1}),
        Panel("Items of category $category by pay rate (>= 10 visitors)", "table", "sales_stats",
              {"level": "item", "top": 20, "order": "pay_rate", "min_visitors": 10}),
    ], [_query_variable("category", "category (top 50 by sales)", top_categories)],
       LAST_WEEK, "1m")  # fmt: skip


def _pipeline() -> dict[str, Any]:
    return dashboard("omstream-pipeline", "Pipeline health", [
        Panel("Events in / stored per second", "timeseries", promql=(
            ("sum(rate(omstream_events_in_total[1m]))", "decoded by workers"),
            ("sum(rate(omstream_events_stored_total[1m]))", "stored by the sink"),
        )),
        Panel("Watermark lag per partition (s)", "timeseries", promql=(
            ("omstream_watermark_lag_seconds", "partition {{partition}}"),
        )),
        Panel("Messages held for open windows", "timeseries", promql=(
            ("sum(omstream_held_messages)", "held"),
        )),
        Panel("Dead letters per second by reason", "timeseries", promql=(
            ("sum by (reason) (rate(omstream_dead_letters_total[5m]))", "{{reason}}"),
        )),
        Panel("ClickHouse insert latency p99 (s)", "timeseries", promql=(
            ("histogram_quantile(0.99, sum by (le, table) "
             "(rate(omstream_clickhouse_insert_seconds_bucket[5m])))", "{{table}}"),
        )),
        Panel("Window rows written per second", "timeseries", promql=(
            ("sum by (kind) (rate(omstream_window_rows_total[1m]))", "{{kind}}"),
        )),
        Panel("Anomaly alerts raised per hour", "timeseries", promql=(
            ("sum by (metric, direction) (increase(omstream_alerts_total[1h]))", "{{metric}} {{direction}}"),
        )),
        Panel("Last minute judged by the alert detector (event time)", "timeseries", promql=(
            ("omstream_alerts_minute_seconds", "minute start (unix s)"),
        )),
        Panel("Rejected input stored (dead letters)", "table", "dead_letters_by_reason", width=24),
    ], [], LAST_HOUR, "10s", historical=False)  # fmt: skip


def _ops() -> dict[str, Any]:
    idcs = _query_variable("idc", "IDC", grafana_sql("ops_idcs", {}), include_all=True)
    return dashboard("omstream-ops", "Ops commands", [
        Panel("Outcomes per day", "barchart", "ops_commands_daily", width=24),
        Panel("Latest outcomes", "table", "ops_command_log", {"top": 200}, width=24),
    ], [idcs], LAST_WEEK, "1m", historical=False)  # fmt: skip


def build() -> dict[str, dict[str, Any]]:
    """Every dashboard, by file name."""
    boards = [_activity(), _funnel_retention(), _categories(), _pipeline(), _ops()]
    return {f"{board['uid'].removeprefix('omstream-')}.json": board for board in boards}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, board in build().items():
        (OUT / name).write_text(render(board), encoding="utf-8")


if __name__ == "__main__":
    main()
