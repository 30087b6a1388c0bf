"""Grafana: every ClickHouse panel query, with the plugin's macros and the dashboard's variables expanded,
runs on chDB against the real schema and returns rows; the JSON is what the catalogue generates; the
provisioning files hold what Grafana requires."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import clickhouse_connect
import pytest
import yaml
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

import clickhouse
import stream.metrics  # noqa: F401  (registers the services' metrics)
from omstream.bench.throughput import load_generated
from stream.alerts import CLOSED, OPEN, UP, Alert, alert_id
from stream.alerts.records import AlertRecord, alert_rows, encode_alert
from stream.events import DeadLetter
from stream.sinks.clickhouse import insert_dead_letters, insert_rows, insert_window_rows
from stream.windows import FunnelRow, WindowRow
from tests.up import environment, omstream, omstream_up, until

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PLUGIN = "grafana-clickhouse-datasource"
INTERVAL_S = 60  # what Grafana would pick for a panel; only $__timeInterval and $__interval_s use it
DAY = 86_400
TAOBAO_START = 1_511_539_200  # 2017-11-25 00:00 China time


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _clickhouse_targets() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in DASHBOARDS:
        board = _load(path)
        for panel in board["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["type"] == PLUGIN:
                    yield path.name, panel["title"], target


# Grafana's time picker: epoch milliseconds (as in a URL) or `now`, `now-7d`, `now-6h`.
def _instant(text: str, now: datetime) -> datetime:
    match = re.fullmatch(r"now(?:-(\d+)([dhm]))?", text)
    if match is None:
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    amount, unit = match.groups()
    return (
        now - timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: int(amount)}) if amount else now
    )


def expand_macros(sql: str, start: datetime, end: datetime, interval_s: int = INTERVAL_S) -> str:
    """The grafana-clickhouse-datasource macros, expanded as its backend does (pkg/macros)."""
    seconds = {"from": int(start.timestamp()), "to": int(end.timestamp())}
    millis = {"from": int(start.timestamp() * 1000), "to": int(end.timestamp() * 1000)}
    days = {"from": start.astimezone(UTC).date(), "to": end.astimezone(UTC).date()}

    def between(column: str, low: str, high: str) -> str:
        return f"{column} >= {low} AND {column} <= {high}"

    def date_time(args: list[str]) -> str:
        dates = between(args[0], f"toDate('{days['from']}')", f"toDate('{days['to']}')")
        times = between(args[1], f"toDateTime({seconds['from']})", f"toDateTime({seconds['to']})")
        return f"({dates}) AND ({times})"

    macros = {
        "fromTime": lambda _: f"toDateTime({seconds['from']})",
        "toTime": lambda _: f"toDateTime({seconds['to']})",
        "fromTime_ms": lambda _: f"fromUnixTimestamp64Milli({millis['from']})",
        "toTime_ms": lambda _: f"fromUnixTimestamp64Milli({millis['to']})",
        "timeFilter": lambda a: between(
            a[0], f"toDateTime({seconds['from']})", f"toDateTime({seconds['to']})"
        ),
        "timeFilter_ms": lambda a: between(
            a[0], f"fromUnixTimestamp64Milli({millis['from']})", f"fromUnixTimestamp64Milli({millis['to']})"
        ),
        "dateFilter": lambda a: between(a[0], f"toDate('{days['from']}')", f"toDate('{days['to']}')"),
        "dateTimeFilter": date_time,
        "dt": date_time,
        "timeInterval": lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {interval_s} second)",
        "timeInterval_ms": lambda a: (
            f"toStartOfInterval(toDateTime64({a[0]}, 3), INTERVAL {interval_s * 1000} millisecond)"
        ),
        "interval_s": lambda _: str(interval_s),
    }

    def expand(match: re.Match[str]) -> str:
        args = [arg.strip() for arg in match.group(2).split(",")] if match.group(2) is not None else []
        return macros[match.group(1)](args)

    return re.sub(r"\$__(\w+)(?:\(([^)]*)\))?", expand, sql)


def expand_variables(sql: str, values: dict[str, str]) -> str:
    """Template variables as Grafana interpolates them: `${name}`, `${name:format}`, `$name`."""
    pattern = r"\$\{(\w+)(?::\w+)?\}|\$(?!__)(\w+)"
    return re.sub(pattern, lambda match: values[match.group(1) or match.group(2)], sql)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """chDB with generated events, real-time window rows, a dead letter and ops results."""
    chdb = clickhouse.connect(f"chdb://{tmp_path_factory.mktemp('grafana') / 'chdb'}")
    try:
        clickhouse.migrate(chdb)
        load_generated(chdb, 30_000, seed=3)
        _load_realtime(chdb)
        insert_dead_letters(chdb, [DeadLetter("dlq/0/1", "malformed", "replay", "not JSON", "x")])
        _load_ops_audit(chdb)
        _load_alerts(chdb)
        yield chdb
    finally:
        chdb.close()


def _load_realtime(chdb: Client) -> None:
    windows = [
        WindowRow(
            kind, TAOBAO_START + offset, partition, pv=10, fav=1, cart=2, buy=1, uv=4, final=1, version=1
        )
        for kind, offset in (("minute", 60), ("hour", 3_600), ("day", DAY), ("rolling_1h", 120))
        for partition in (0, 1)
    ]
    funnels = [FunnelRow("day", TAOBAO_START, 0, pv_users=5, cart_users=3, buy_users=1, final=1, version=1)]
    insert_window_rows(chdb, windows, funnels)


def _load_alerts(chdb: Client) -> None:
    """A closed and an open alert on Dec 2 (the generator's spike day)."""
    start = TAOBAO_START + 7 * DAY + 120
    records = [
        AlertRecord(Alert(alert_id(metric, UP, start), metric, UP, status, start, start + 600, 900.0, 300.0,
                          9.5, start + 120, int(status == CLOSED)), raised_at=1_700_000_000.0)
        for metric, status in (("pv", CLOSED), ("uv", OPEN))
    ]  # fmt: skip
    insert_rows(chdb, "alerts", [row for record in records for row in alert_rows(encode_alert(record))])


def test_alert_annotations_mark_the_activity_board_on_the_days_they_cover(client: Client) -> None:
    board = _load(GRAFANA / "dashboards" / "activity.json")
    (annotation,) = board["annotations"]["list"]
    assert annotation["datasource"]["type"] == PLUGIN
    linked = _linked_range(board)
    assert linked is not None
    start, end = (_instant(linked[edge], datetime.now(UTC)) for edge in ("from", "to"))
    result = client.query(expand_macros(annotation["target"]["rawSql"], start, end))
    rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    assert {(row["metric"], row["status"]) for row in rows} == {("pv", "closed"), ("uv", "open")}
    assert all(row["timeEnd"] > row["time"] and row["text"].startswith(row["metric"]) for row in rows)
    before = client.query(expand_macros(annotation["target"]["rawSql"], start, start + timedelta(days=7)))
    assert before.result_rows == []  # the alerts lie on Dec 2, outside the first week


def _load_ops_audit(chdb: Client) -> None:
    stored = datetime.now(UTC) - timedelta(hours=1)
    command = uuid.uuid4()
    base = {"command_id": command, "operator": "alice", "module": "ping", "target": "web*", "args": "{}",
            "output": "{}", "duration_ms": 12.0, "truncated": False, "source": "ops.commands/0/1",
            "issued_at": stored, "stored_at": stored}  # fmt: skip
    rows = [
        {**base, "record_id": "a", "stage": "received", "idc": "", "minion": "", "master": "",
         "status": "accepted", "reason": ""},
        {**base, "record_id": "b", "stage": "result", "idc": "bj", "minion": "web1", "master": "bj-1",
         "status": "succeeded", "reason": ""},
        {**base, "record_id": "c", "stage": "result", "idc": "sh", "minion": "", "master": "",
         "status": "unknown", "reason": "no_reply"},
    ]  # fmt: skip
    names = list(rows[0])
    chdb.insert("ops_audit_log", [[row[name] for name in names] for row in rows], column_names=names)


def _variable_bindings(
    client: Client, board: dict[str, Any], start: datetime, end: datetime
) -> list[dict[str, str]]:
    """Each variable's first value as Grafana would pick it (its query sees the variables before it, and the
    time range), and for 'All' variables their all-value too."""
    choices: dict[str, list[str]] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "constant":
            choices[variable["name"]] = [variable["query"]]
            continue
        known = {name: values[0] for name, values in choices.items()}
        rows = client.query(expand_macros(expand_variables(variable["query"], known), start, end)).result_rows
        assert rows, f"{board['title']}: variable {variable['name']} has no values"
        choices[variable["name"]] = [str(rows[0][0])] + (
            [variable["allValue"]] if variable["includeAll"] else []
        )
    return [
        dict(zip(choices, combination, strict=True)) for combination in itertools.product(*choices.values())
    ]


def test_dashboards_are_what_the_catalogue_generates() -> None:
    builder = _builder()
    boards = builder.build()
    assert sorted(boards) == [path.name for path in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text(encoding="utf-8") == builder.render(boards[path.name]), (
            f"{path.name} is stale: run .venv/bin/python grafana/build_dashboards.py"
        )


def _linked_range(board: dict[str, Any]) -> dict[str, str] | None:
    """The time range of the dashboard's link to the Taobao days, if it has one."""
    for link in board["links"]:
        query = parse_qs(urlsplit(link["url"]).query)
        return {"from": query["from"][0], "to": query["to"][0]}
    return None


def test_dashboards_open_on_a_recent_range_refresh_and_link_the_taobao_days() -> None:
    for path in DASHBOARDS:
        board = _load(path)
        assert board["time"]["from"].startswith("now-") and board["time"]["to"] == "now", path.name
        assert board["refresh"], path.name
        linked = _linked_range(board)
        if path.name in ("pipeline.json", "ops.json"):  # wall-clock data: metrics, commands
            assert linked is None
            continue
        assert linked is not None and board["links"][0]["url"].startswith(f"/d/{board['uid']}?")
        now = datetime.now(UTC)
        assert _instant(linked["from"], now) == datetime(2017, 11, 24, 16, tzinfo=UTC)  # China midnight
        assert _instant(linked["to"], now) == datetime(2017, 12, 3, 15, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("board", "title", "target"),
    [pytest.param(*target, id=f"{target[0]}: {target[1]}") for target in _clickhouse_targets()],
)
def test_every_clickhouse_panel_query_returns_rows(
    client: Client, board: str, title: str, target: dict[str, Any]
) -> None:
    """On the generated data (the Taobao days, a link away) or, for live data, the default range."""
    dashboard = _load(GRAFANA / "dashboards" / board)
    now = datetime.now(UTC)
    shown = _linked_range(dashboard) or dashboard["time"]
    start, end = (_instant(shown[edge], now) for edge in ("from", "to"))
    for values in _variable_bindings(client, dashboard, start, end):
        sql = expand_macros(expand_variables(target["rawSql"], values), start, end)
        assert "$" not in sql, sql
        rows = client.query(sql).result_rows
        assert rows, f"{board} / {title} with {values}: no rows"


def test_macros_expand_as_the_plugin_does() -> None:
    start, end = datetime(2017, 11, 25, tzinfo=UTC), datetime(2017, 11, 26, tzinfo=UTC)
    assert expand_macros("$__timeFilter(ts)", start, end) == (
        "ts >= toDateTime(1511568000) AND ts <= toDateTime(1511654400)"
    )
    assert expand_macros("$__timeInterval(ts)", start, end) == (
        "toStartOfInterval(toDateTime(ts), INTERVAL 60 second)"
    )
    assert expand_macros("$__dateFilter(d) $__toTime_ms", start, end) == (
        "d >= toDate('2017-11-25') AND d <= toDate('2017-11-26') fromUnixTimestamp64Milli(1511654400000)"
    )
    assert expand_variables(
        "'${tz}' $category ${idc:singlequote}", {"tz": "UTC", "category": "7", "idc": "bj"}
    ) == ("'UTC' 7 bj")


def _exported_metrics() -> set[str]:
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        metric.name + suffix for metric in REGISTRY.collect() for suffix in suffixes.get(metric.type, ("",))
    }


def test_prometheus_panels_use_metrics_the_services_export() -> None:
    exported = _exported_metrics()
    expressions = [
        target["expr"]
        for path in DASHBOARDS
        for panel in _load(path)["panels"]
        for target in panel["targets"]
        if target["datasource"]["type"] == "prometheus"
    ]
    assert expressions
    for expression in expressions:
        used = set(re.findall(r"\bomstream_\w+", expression))
        assert used and used <= exported, expression


def _yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1, path
    return document


def test_provisioning_is_valid_and_matches_the_dashboards() -> None:
    datasources = [
        source
        for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yaml"))
        for source in _yaml(path)["datasources"]
    ]
    for source in datasources:
        assert {"name", "type", "uid"} <= set(source), source
    by_uid = {source["uid"]: source for source in datasources}
    clickhouse_source = by_uid["omstream-clickhouse"]
    assert clickhouse_source["type"] == PLUGIN
    assert {"host", "port", "protocol", "username"} <= set(clickhouse_source["jsonData"])
    assert by_uid["omstream-prometheus"]["url"].startswith("http")
    used = {
        (panel["datasource"]["uid"], panel["datasource"]["type"])
        for path in DASHBOARDS
        for panel in _load(path)["panels"]
    }
    assert used <= {(uid, source["type"]) for uid, source in by_uid.items()}
    providers = [
        provider
        for path in sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yaml"))
        for provider in _yaml(path)["providers"]
    ]
    assert providers and all({"name", "type", "options"} <= set(provider) for provider in providers)
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    mounted = re.search(r"\./grafana/dashboards:([^:\s]+)", compose)
    assert mounted is not None
    assert [provider["options"]["path"] for provider in providers] == [mounted.group(1)]


def _endpoint_client(state: Path) -> Client:
    """clickhouse-connect over HTTP to the query endpoint `omstream up` announced."""
    endpoint = json.loads((state / "clickhouse.json").read_text())
    host, port = endpoint["url"].removeprefix("http://").split(":")
    return clickhouse_connect.get_client(
        host=host, port=int(port), username=endpoint["user"], password=endpoint["password"],
        database=endpoint["database"],
    )  # fmt: skip


def _panel_queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in board["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] == PLUGIN:
                yield panel["title"], target["rawSql"]


# Panels that have rows a few seconds into a live stream (others need days of data, or buys)
LIVE_PANELS = {
    "Real-time PV and UV per minute",
    "Real-time PV and UV per hour",
    "Daily PV, UV, new users, buyers",
    "Behaviour totals",
    "Latest outcomes",
}


@pytest.mark.integration
def test_every_panel_query_runs_over_http_against_omstream_up_while_events_stream_in(
    tmp_path: Path, ordered_file: Path
) -> None:
    """clickhouse-connect's HTTP client (ClickHouse's HTTP interface, which Grafana's plugin uses too) on
    the query endpoint of `omstream up`, with each dashboard's default range, while a live replay sends."""
    state = tmp_path / "state"
    with omstream_up(state, tmp_path / "up.log"):
        live = ["replay", str(ordered_file), "--live", "--speedup", "8000"]
        replay = subprocess.Popen(
            [sys.executable, "-m", "omstream", *live], env=environment(state), stderr=subprocess.DEVNULL
        )
        try:
            ping = omstream(state, "ops", "run", "--operator", "demo", "--idc", "bj", "--target", "*",
                            "--module", "ping", "--wait")  # fmt: skip
            assert ping.returncode == 0, ping.stderr
            http = _endpoint_client(state)
            minutes = "SELECT count() FROM realtime_windows WHERE kind = 'minute'"
            until(lambda: http.command(minutes), 60, "no real-time rows")
            audited = "SELECT count() FROM ops_audit_log WHERE idc != ''"  # the ping's result, stored
            until(lambda: http.command(audited), 60, "no audit rows")
            for path in DASHBOARDS:
                board = _load(path)
                now = datetime.now(UTC)
                start, end = (_instant(board["time"][edge], now) for edge in ("from", "to"))
                for values in _variable_bindings(http, board, start, end):
                    for title, sql in _panel_queries(board):
                        rows = http.query(
                            expand_macros(expand_variables(sql, values), start, end)
                        ).result_rows
                        assert rows or title not in LIVE_PANELS, f"{path.name}: {title}"
            assert replay.poll() is None, (
                "the replay ended before the queries: they did not run while it sent"
            )
        finally:
            replay.kill()
            replay.wait()
