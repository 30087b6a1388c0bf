from datetime import date
from pathlib import Path

import clickhouse
from clickhouse._migrations import _migration_files, _statements


def test_migrations_apply_once_and_events_deduplicate(tmp_path: Path) -> None:
    client = clickhouse.connect(f"chdb://{tmp_path / 'ch'}")
    try:
        assert clickhouse.migrate(client) == [
            "0001_events",
            "0002_realtime",
            "0003_ops_audit",
            "0004_realtime_first_epoch",
            "0005_ops_audit_log",
            "0006_events_view",
            "0008_alerts",
        ]
        assert clickhouse.migrate(client) == []
        row = [7, 1, 2, "buy", 1_511_544_070]
        columns = ["user_id", "item_id", "category_id", "behavior", "ts"]
        for _ in range(3):  # a replayed batch lands again: still one event
            client.insert("events_raw", [row, [8, 1, 2, "pv", 1_511_544_070]], column_names=columns)
        day = {"tz": "Asia/Shanghai", "from": date(2017, 11, 25), "to": date(2017, 11, 25)}
        totals = {
            row["behavior"]: row["events"] for row in clickhouse.query_rows(client, "behavior_totals", **day)
        }
        assert totals == {"pv": 1, "buy": 1}
        daily = clickhouse.query_rows(client, "daily_activity", **day)
        assert [(row["date"], row["pv"], row["uv"]) for row in daily] == [("2017-11-25", 1, 2)]
    finally:
        client.close()


def test_events_counts_each_event_once_and_a_schema_from_before_keeps_its_rows(tmp_path: Path) -> None:
    """`SELECT count() FROM events`, as anyone would write it, is exact before any merge; a database
    written before migration 0006 keeps its events under the new names."""
    client = clickhouse.connect(f"chdb://{tmp_path / 'ch'}")
    columns = ["user_id", "item_id", "category_id", "behavior", "ts"]
    try:
        for version, script in _migration_files():
            if version < "0006":
                for statement in _statements(script):
                    client.command(statement)
        client.insert("events", [[1, 2, 3, "pv", 1_511_544_070]], column_names=columns)
        clickhouse.migrate(client)
        for _ in range(3):  # re-processed batches: the same event written again
            client.insert("events_raw", [[7, 1, 2, "buy", 1_511_544_070]], column_names=columns)
        assert client.command("SELECT count() FROM events_raw") == 4
        assert client.command("SELECT count() FROM events") == 2
        assert client.command("SELECT count() FROM distinct_events") == 2
    finally:
        client.close()
