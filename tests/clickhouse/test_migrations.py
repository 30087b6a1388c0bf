from pathlib import Path

import clickhouse


def test_migrations_apply_once_and_events_deduplicate(tmp_path: Path) -> None:
    client = clickhouse.connect(f"chdb://{tmp_path / 'ch'}")
    try:
        assert clickhouse.migrate(client) == ["0001_events", "0002_realtime"]
        assert clickhouse.migrate(client) == []
        row = [7, 1, 2, "buy", 1_511_544_070]
        columns = ["user_id", "item_id", "category_id", "behavior", "ts"]
        for _ in range(3):  # a replayed batch lands again: still one event
            client.insert("events", [row, [8, 1, 2, "pv", 1_511_544_070]], column_names=columns)
        totals = {row["behavior"]: row["events"] for row in clickhouse.query_rows(client, "behavior_totals")}
        assert totals == {"pv": 1, "buy": 1}
        daily = clickhouse.query_rows(client, "daily_activity", tz="Asia/Shanghai")
        assert daily == [{"date": "2017-11-25", "pv": 1, "uv": 2}]
    finally:
        client.close()
