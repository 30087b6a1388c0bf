"""Raw events stored from their JSON (and, when ClickHouse refuses it, from the decoded events)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from clickhouse_connect.driver.client import Client

import clickhouse
from stream.events import FixedRange, decode_fields
from stream.sinks.clickhouse import EVENT_COLUMNS, insert_event_messages

WINDOW = FixedRange(1_511_539_200, 1_512_316_800)
GOOD = {"user_id": 1, "item_id": 2, "category_id": 3, "behavior": "pv", "ts": 1_511_544_070}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    chdb = clickhouse.connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        clickhouse.migrate(chdb)
        yield chdb
    finally:
        chdb.close()


def stored(client: Client) -> list[tuple[object, ...]]:
    columns = ", ".join(EVENT_COLUMNS[:4]) + ", toUnixTimestamp(ts), " + ", ".join(EVENT_COLUMNS[5:])
    rows = client.query(f"SELECT {columns}, ingested_at > 0 FROM events_raw").result_rows
    assert all(row[-1] for row in rows)  # a field named like a column the sink sets is not taken
    return sorted(tuple(row[:-1]) for row in rows)


def store(client: Client, messages: list[bytes]) -> None:
    decoded = [decode_fields(message, WINDOW) for message in messages]
    insert_event_messages(client, messages, [event for events in decoded if events for event in events])


def expected(*events: dict[str, object]) -> list[tuple[object, ...]]:
    return sorted(
        tuple({"channel": "", "device_id": "", "event_id": "", **event}[name] for name in EVENT_COLUMNS)
        for event in events
    )


def test_messages_are_stored_exactly_as_the_model_reads_them(client: Client) -> None:
    odd = {
        **GOOD,
        "user_id": 2**63 - 1,
        "channel": 'a"b\\n,ü\u2028}]',
        "extra": [{"user_id": 7}],
        "ingested_at": 0,
    }
    single = {**GOOD, "user_id": 2, "behavior": "buy", "event_id": "e-2"}
    messages = [orjson.dumps([GOOD, odd]) + b" \n", orjson.dumps(single), b"[]"]
    store(client, messages)
    del odd["extra"], odd["ingested_at"]
    assert stored(client) == expected(GOOD, odd, single)


def test_json_that_clickhouse_refuses_is_stored_from_the_decoded_events(client: Client) -> None:
    repeated_key = (
        b'[{"user_id": 5, "user_id": 6, "item_id": 2, "category_id": 3, "behavior": "pv", "ts": %d}]'
    )
    store(client, [repeated_key % GOOD["ts"], orjson.dumps(GOOD)])
    assert stored(client) == expected({**GOOD, "user_id": 6}, GOOD)
