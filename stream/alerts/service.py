"""The detector as a service: window rows in from `omstream.windows`, alerts out to `omstream.alerts`.

It runs in the sink's process (one sink per deployment: the one consumer that already reads every
partition's window rows) as a task of its own. Its state (each partition's rows of incomplete
minutes, the minutes' history, open alerts) is a function of the window rows, rebuilt after a
restart: first from the minute rows the sink stored in ClickHouse (retention deletes the topic's
stored records, so the topic alone may hold only the last hours), then from the topic's beginning,
with a consumer outside any group, for the minutes ClickHouse did not hold complete. The alerts it
derives again carry the ids they had. At start it reads `omstream.alerts` to its end and publishes
only records not there yet: an alert is raised once, not once per restart (a crash between deciding
and publishing publishes it late, never twice; the table keys by id regardless).

The stored history read is twice the history one minute's judgement reads. Where ClickHouse holds
more than that, the first half only builds up history: the detector judges those minutes with less
history than the one before the restart had, so an alert starting there may differ from what that
one published, and is not published. The second half is judged as before the restart, and catches up
on minutes stored but not yet judged when the sink stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream import metrics
from stream.alerts.detector import OPEN, Alert, AlertRules, Detector
from stream.alerts.minutes import MINUTE, MinuteAssembler, MinuteTotals
from stream.alerts.records import AlertRecord, decode_alert, encode_alert
from stream.kafka import kafka_options, read_to_end
from stream.results import WindowResults, decode_results
from stream.windows import WindowRow

log = logging.getLogger("omstream.alerts")

# Each partition's latest stored minute row over the last given seconds of event time stored
StoredMinutes = Callable[[int], Awaitable[list[WindowRow]]]


@dataclass(frozen=True)
class AlertsConfig:
    bootstrap: str
    windows_topic: str  # one partition: every worker's rows in the order they were sent
    alerts_topic: str
    partitions: int  # of the events topic
    rules: AlertRules


class AlertPublisher:
    """Publishes each alert record once: it knows what the topic held when it started."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, published: dict[str, AlertRecord]) -> None:
        self.producer = producer
        self.topic = topic
        self.published = published  # alert id -> its latest record on the topic

    async def publish(self, alert: Alert) -> None:
        known = self.published.get(alert.alert_id)
        if known is not None and known.alert.version >= alert.version:
            return  # derived again by a rebuilt detector
        record = AlertRecord(alert, known.raised_at if known else time.time())
        await self.producer.send_and_wait(self.topic, encode_alert(record), key=alert.alert_id.encode())
        self.published[alert.alert_id] = record
        if alert.status == OPEN:
            metrics.ALERTS.labels(alert.metric, alert.direction).inc()
            log.warning(
                "alert: %s %s from %s, score %.1f",
                *(alert.metric, alert.direction),
                *(alert.window_start, alert.score),
            )


async def published_alerts(bootstrap: str, topic: str) -> dict[str, AlertRecord]:
    published: dict[str, AlertRecord] = {}
    async for message in read_to_end(bootstrap, topic):
        try:
            record = decode_alert(message.value or b"")
        except (ValueError, KeyError, TypeError):
            continue  # not an alert: nothing to skip publishing for
        known = published.get(record.alert.alert_id)
        if known is None or known.alert.version < record.alert.version:
            published[record.alert.alert_id] = record
    return published


def stored_span(detector: Detector) -> int:
    """Seconds of stored history the detector resumes from: twice what one minute's judgement reads."""
    return 2 * detector.rules.baseline.history_minutes * MINUTE


def resumed(
    rows: list[WindowRow], assembler: MinuteAssembler, detector: Detector
) -> Iterator[tuple[MinuteTotals, list[Alert]]]:
    """Each minute complete in the stored rows (the last `stored_span`), with the alerts to publish
    of those it raises or closes: where ClickHouse holds more than the span, none starting in its
    first half (see the module's note)."""
    if not rows:
        return
    cut = rows[0].window_start <= rows[-1].window_start - stored_span(detector)  # ClickHouse may hold more
    publish_from = rows[0].window_start + stored_span(detector) // 2 if cut else 0
    for minute in assembler.add_stored(rows):
        yield minute, [alert for alert in detector.observe(minute) if alert.window_start >= publish_from]


async def resume_from_stored(
    stored: StoredMinutes, assembler: MinuteAssembler, detector: Detector, publisher: AlertPublisher
) -> None:
    """Feed the detector the minutes ClickHouse holds complete, publishing what `resumed` says."""
    rows = await stored(stored_span(detector))
    log.info("alert history: %d minute rows stored in ClickHouse", len(rows))
    for minute, alerts in resumed(rows, assembler, detector):
        for alert in alerts:
            await publisher.publish(alert)
        metrics.ALERT_MINUTE.set(minute.start)
        if minute.start % 3600 == 0:
            await asyncio.sleep(0)  # leave the sink its turns


async def run_alerts(config: AlertsConfig, stored: StoredMinutes | None = None) -> None:
    """Follow the window rows for ever, publishing alerts as the detector raises and closes them;
    `stored` reads the minute rows the sink stored (None: the topic alone)."""
    publisher = AlertPublisher(
        AIOKafkaProducer(**kafka_options(config.bootstrap), linger_ms=5),
        config.alerts_topic,
        await published_alerts(config.bootstrap, config.alerts_topic),
    )
    consumer = AIOKafkaConsumer(
        **kafka_options(config.bootstrap), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    assembler, detector = MinuteAssembler(config.partitions), Detector(config.rules)
    await publisher.producer.start()
    await consumer.start()
    try:
        if stored is not None:
            await resume_from_stored(stored, assembler, detector, publisher)
        partition = TopicPartition(config.windows_topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)  # retention may have deleted the first records
        while True:
            fetched = await consumer.getmany(partition, timeout_ms=1_000)
            for message in fetched.get(partition, []):
                results = _window_results(message.value)
                if results is None:
                    continue
                for minute in assembler.add(results):
                    for alert in detector.observe(minute):
                        await publisher.publish(alert)
                    metrics.ALERT_MINUTE.set(minute.start)
                await asyncio.sleep(0)  # a backlog (a restart re-reads the topic) leaves the sink its turns
    finally:
        await consumer.stop()
        await publisher.producer.stop()


def _window_results(value: bytes | None) -> WindowResults | None:
    """A worker's record, or None for anything else on the topic (the sink dead-letters and counts it)."""
    try:
        return decode_results(value or b"")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def detect_alerts_in(app: faust.App, config: AlertsConfig, stored: StoredMinutes) -> None:
    """Run the detector as a task of `app`; its failure stops the app (a supervisor restarts it)."""

    async def detect() -> None:
        try:
            await run_alerts(config, stored)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("the alert detector failed")
            await app.crash(error)

    app.task(detect)
