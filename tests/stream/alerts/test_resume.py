"""The detector resumes from the history ClickHouse holds when the window-rows topic no longer does.

Retention deletes the window rows the sink stored, so after a restart the topic may hold only the
last hours. Here ClickHouse holds four days of a partitioned PV curve up to the fifth morning (with a
spike on the fourth day that the detector before the restart raised and published), and the topic
holds only the fifth morning's rows, from two hours before ClickHouse's last minute on (the overlap
must not count twice), with a drop in them. The restarted sink's detector raises the drop, once, and
publishes nothing for the spike it derives again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

import clickhouse
from omstream.embedded.stack import service_process
from omstream.services import alert_rules
from omstream.settings import Settings
from stream.alerts import OPEN, Detector, MinuteAssembler
from stream.alerts.records import AlertRecord, encode_alert
from stream.alerts.service import resumed, stored_span
from stream.kafka import kafka_options
from stream.results import decode_results, encode_results
from stream.sinks.clickhouse import insert_window_rows, stored_minute_rows
from stream.sources.taobao import TAOBAO_START
from stream.windows import WindowRow
from tests.stream.alerts.test_pipeline import alert_records

DAY, HOUR, MINUTE = 86_400, 3_600, 60
SPIKE = TAOBAO_START + 3 * DAY + 10 * HOUR  # stored: raised before the restart
STORED_UNTIL = TAOBAO_START + 4 * DAY + 8 * HOUR  # ClickHouse holds the minutes before
DROP = TAOBAO_START + 4 * DAY + 9 * HOUR  # on the topic only
END = TAOBAO_START + 4 * DAY + 10 * HOUR
ON_TOPIC_FROM = STORED_UNTIL - 2 * HOUR


def minute_rows(partitions: int) -> list[WindowRow]:
    """Final minute rows per partition: PV ~ Poisson(40 to 120 along the day), x4 in the spike,
    a tenth in the drop (15 minutes each); the other counts follow PV."""
    rng = np.random.default_rng(7)
    starts = np.arange(TAOBAO_START, END, MINUTE)
    hour = (starts - TAOBAO_START) % DAY / HOUR
    rate = 40 * (2 - np.cos(2 * np.pi * (hour - 4) / 24))
    rate[(starts >= SPIKE) & (starts < SPIKE + 15 * MINUTE)] *= 4
    rate[(starts >= DROP) & (starts < DROP + 15 * MINUTE)] *= 0.1
    rows = []
    for index, start in enumerate(starts.tolist()):
        for partition, pv in enumerate(rng.poisson(rate[index], partitions).tolist()):
            rows.append(
                WindowRow("minute", start, partition, pv, pv // 20, pv // 10, pv // 30, pv // 2, 1, index)
            )
    return rows


def window_messages(rows: list[WindowRow], partitions: int) -> list[bytes]:
    """As a worker sends them: each minute's rows, every partition written through its end."""
    messages = []
    for start in sorted({row.window_start for row in rows}):
        minute = [row for row in rows if row.window_start == start]
        messages += encode_results(minute, [], {}, dict.fromkeys(range(partitions), start + MINUTE))
    return messages


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(**kafka_options(bootstrap))
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.integration
def test_the_restarted_detector_resumes_from_clickhouse(settings: Settings, bootstrap: str) -> None:
    settings = settings.model_copy(
        update={"alert_metrics": ["pv"], "alert_baseline_days": 3, "alert_min_history_days": 2}
    )
    partitions = settings.events_partitions
    rows = minute_rows(partitions)
    stored = [row for row in rows if row.window_start < STORED_UNTIL]
    # the last stored minute is still open on one partition: its row on the topic has a later version
    stored[-1] = replace(stored[-1], pv=stored[-1].pv // 2, final=0, version=stored[-1].version - 1)
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        clickhouse.migrate(client)
        insert_window_rows(client, stored, [])
        assert len(stored_minute_rows(client, 3600)) == 61 * partitions  # the query's span is inclusive
    finally:
        client.close()
    # what the detector before the restart published: the spike, raised and closed
    assembler, detector = MinuteAssembler(partitions), Detector(alert_rules(settings))
    before = [
        alert
        for results in window_messages([row for row in rows if row.window_start < STORED_UNTIL], partitions)
        for minute in assembler.add(decode_results(results))
        for alert in detector.observe(minute)
    ]
    assert [(a.direction, a.window_start, a.status) for a in before] == [
        ("up", SPIKE, "open"),
        ("up", SPIKE, "closed"),
    ]
    published = [encode_alert(AlertRecord(alert, time.time())) for alert in before]
    asyncio.run(produce(bootstrap, settings.alerts_topic, published))
    on_topic = [row for row in rows if row.window_start >= ON_TOPIC_FROM]
    asyncio.run(produce(bootstrap, settings.windows_topic, window_messages(on_topic, partitions)))

    with service_process(settings, bootstrap, "sink", "sink"):
        deadline = time.monotonic() + 120  # a loaded machine starts the sink slowly
        while not any(
            (r.alert.direction, r.alert.window_start, r.alert.status) == ("down", DROP, OPEN)
            for _, r in alert_records(settings, bootstrap)
        ):
            assert time.monotonic() < deadline, "the drop was not raised"
            time.sleep(0.5)
        time.sleep(2)  # anything else it would publish
        records = [record for _, record in alert_records(settings, bootstrap)]
    assert Counter((r.alert.alert_id, r.alert.version) for r in records).most_common(1)[0][1] == 1
    opened = {
        (r.alert.metric, r.alert.direction, r.alert.window_start) for r in records if r.alert.version == 0
    }
    assert opened == {("pv", "up", SPIKE), ("pv", "down", DROP)}


def test_alerts_of_the_first_half_of_a_cut_history_are_not_published() -> None:
    """ClickHouse holds ten days, the detector resumes from the last six (twice the three days and
    five minutes a minute's judgement reads): it judges the first three with less history than the
    detector before the restart had, so it publishes nothing starting there; the last three it judges
    as before."""
    rules = alert_rules(Settings(alert_metrics=["pv"], alert_baseline_days=3, alert_min_history_days=2))
    rng = np.random.default_rng(5)
    starts = np.arange(TAOBAO_START, TAOBAO_START + 10 * DAY, MINUTE)
    hour = (starts - TAOBAO_START) % DAY / HOUR
    pv = rng.poisson(200 * (2 - np.cos(2 * np.pi * (hour - 4) / 24)))
    early, late = TAOBAO_START + 6 * DAY + 10 * HOUR, TAOBAO_START + 8 * DAY + 15 * HOUR
    for spike in (early, late):
        pv[(starts >= spike) & (starts < spike + 15 * MINUTE)] *= 4
    rows = [
        WindowRow("minute", start, 0, count, 0, 0, 0, count // 2, 1, index)
        for index, (start, count) in enumerate(zip(starts.tolist(), pv.tolist(), strict=True))
    ]
    before = Detector(rules)  # the detector before the restart, which saw every day
    full = [alert for minute in MinuteAssembler(1).add_stored(rows) for alert in before.observe(minute)]
    detector = Detector(rules)
    span = [row for row in rows if row.window_start >= rows[-1].window_start - stored_span(detector)]
    published = [alert for _, alerts in resumed(span, MinuteAssembler(1), detector) for alert in alerts]
    assert {(a.window_start, a.status) for a in full} >= {(early, "open"), (late, "open")}
    assert [(a.window_start, a.status) for a in published] == [(late, "open"), (late, "closed")]
    assert {(a.alert_id, a.version) for a in published} <= {(a.alert_id, a.version) for a in full}
