"""Producers we do not write, against the embedded broker and the running pipeline: librdkafka
(confluent-kafka) with every codec and kafka-python, keyed and unkeyed, one event per message and JSON
arrays, good events mixed with every kind of bad input in the same record batches, and record batches
that cannot be decoded at all. The windows and the raw counts are compared exactly, each bad input
is dead-lettered once with its reason and origin, and no service stops."""

from __future__ import annotations

import asyncio
import itertools
import urllib.request
from collections import Counter
from typing import Any

import confluent_kafka
import kafka
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

import clickhouse
from omstream.embedded.stack import free_port, service_process, wait_until_processed, worker_process
from omstream.settings import Settings
from stream.events import MAX_MESSAGE_BYTES
from stream.kafka import high_water_marks
from tests.expected import behavior_totals, funnel_daily, hourly_activity
from tests.pipeline import stored
from tests.record_batches import bad_crc, corrupt_gzip, produce_raw, record_batch

pytestmark = pytest.mark.integration

START = 1_511_600_000  # in the Taobao window the settings accept; every event within the grace
Row = tuple[int, int, int, str, int]


class Events:
    """Distinct valid events, and the rows they are expected to be stored as."""

    def __init__(self) -> None:
        self._numbers = itertools.count()
        self.rows: set[Row] = set()

    def take(self, count: int, user: int | None = None) -> list[dict[str, Any]]:
        events = []
        for _ in range(count):
            n = next(self._numbers)
            row: Row = (
                user if user is not None else 1 + n % 37,
                1_000 + n,
                1 + n % 5,
                ("pv", "pv", "cart", "fav", "buy")[n % 5],
                START + n % 300,
            )
            self.rows.add(row)
            event = dict(zip(("user_id", "item_id", "category_id", "behavior", "ts"), row, strict=True))
            events.append(event)
        return events


# Bad input, each kind once per producer, and the reason it is dead-lettered with
BAD_INPUT: dict[str, bytes | None] = {
    "null_value": None,
    "not_utf8": b'{"user_id": 1, "item_id": 2, "category_id": 3, "behavior": "\xff", "ts": 1511600000}',
    "malformed": b'{"user_id": 1, "item_id": ',
    "invalid": b'{"user_id": "12", "item_id": 2, "category_id": 3, "behavior": "pv", "ts": 1511600000}',
    "unknown_behavior": b'{"user_id": 1, "item_id": 2, "category_id": 3, "behavior": "no", "ts": 1511600000}',
    "out_of_window": b'{"user_id": 1, "item_id": 2, "category_id": 3, "behavior": "pv", "ts": 1511600000123}',
    "oversized": b'{"user_id": 1, "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}',
}


def messages(events: Events, user: int) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of one producer's messages to the partition of `user`: single events, a JSON array,
    an array with one bad event among good ones, and every kind of bad input, interleaved."""
    key = str(user).encode()
    singles = [(key, orjson.dumps(event)) for event in events.take(6, user)]
    array = (key, orjson.dumps(events.take(5, user)))
    mixed = (key, orjson.dumps([*events.take(2, user), {"user_id": user, "behavior": "pv"}]))
    bad = [(key, value) for value in BAD_INPUT.values()]
    return [singles[0], *bad[:3], singles[1], array, *bad[3:], mixed, *singles[2:]]


def confluent_producer(bootstrap: str, codec: str) -> confluent_kafka.Producer:
    return confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "linger.ms": 200,  # the messages of a partition travel in one record batch
            "partitioner": "murmur2_random",  # Kafka's Java client's key hashing, as the events topic needs
            "message.max.bytes": 4 * MAX_MESSAGE_BYTES,  # so the oversized message reaches the broker
        }
    )


def send_with_confluent(bootstrap: str, topic: str, events: Events) -> None:
    for user, codec in enumerate(("none", "gzip", "snappy", "lz4", "zstd"), start=101):
        producer = confluent_producer(bootstrap, codec)
        for key, value in messages(events, user):
            producer.produce(topic, value=value, key=key)
        # unkeyed, as a producer that knows nothing of users sends: wherever librdkafka puts them
        for event in events.take(4):
            producer.produce(topic, value=orjson.dumps(event))
        producer.produce(topic, value=orjson.dumps(events.take(6)))
        assert producer.flush(30) == 0


def send_with_kafka_python(bootstrap: str, topic: str, events: Events) -> None:
    for user, codec in ((201, "gzip"), (202, "lz4"), (203, None)):
        producer = kafka.KafkaProducer(
            bootstrap_servers=bootstrap,
            compression_type=codec,
            linger_ms=200,
            max_request_size=4 * MAX_MESSAGE_BYTES,
        )
        for key, value in messages(events, user):
            producer.send(topic, value=value, key=key)
        for event in events.take(3):
            producer.send(topic, value=orjson.dumps(event))
        producer.flush(30)
        producer.close()


def send_undecodable(bootstrap: str, topic: str, events: Events) -> None:
    """Two batches no consumer can read (they hold good-looking events, which are lost with them),
    each between readable ones."""
    lost = [orjson.dumps(event) for event in Events().take(3)]  # not in `events`: never stored
    for damaged in (corrupt_gzip(lost), bad_crc(lost)):
        asyncio.run(produce_raw(bootstrap, topic, 1, damaged))
        producer = confluent_producer(bootstrap, "none")
        producer.produce(topic, value=orjson.dumps(events.take(1)[0]), partition=1)
        assert producer.flush(30) == 0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_foreign_producers_with_every_codec_and_bad_input_in_the_same_batches(
    settings: Settings, bootstrap: str
) -> None:
    topic = settings.events_topic
    events = Events()
    sink, worker = (settings.model_copy(update={"metrics_port": free_port()}) for _ in "ab")
    with service_process(sink, bootstrap, "sink", "sink"), worker_process(worker, bootstrap):
        send_with_confluent(bootstrap, topic, events)
        send_with_kafka_python(bootstrap, topic, events)
        send_undecodable(bootstrap, topic, events)
        # and on the topic from the workers to the sink: a record of another shape, a damaged batch
        asyncio.run(produce_raw(bootstrap, settings.windows_topic, 0, bytes(record_batch([b"garbage"]))))
        asyncio.run(produce_raw(bootstrap, settings.windows_topic, 0, bad_crc([b"{}"])))
        marks = asyncio.run(high_water_marks(bootstrap, topic, settings.events_partitions))
        targets = {(topic, partition): mark - 1 for partition, mark in marks.items() if mark}
        wait_until_processed(settings, bootstrap, targets, 180)
        sink_metrics, worker_metrics = scrape(sink.metrics_port), scrape(worker.metrics_port)

    report = stored(settings)
    assert report.behavior_totals == behavior_totals(events.rows)
    assert report.realtime.hourly == hourly_activity(events.rows, settings.timezone)
    assert report.realtime.funnel_daily == funnel_daily(events.rows, settings.timezone)

    producers = 5 + 3  # confluent-kafka with each codec, kafka-python with three
    expected_letters = {reason: producers for reason in BAD_INPUT} | {"undecodable_batch": 2}
    expected_letters["invalid"] += producers  # the bad event of each mixed array
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        assert client.command("SELECT count() FROM events") == len(events.rows)
        letters = client.query("SELECT reason, source, origin, detail FROM dead_letters FINAL").result_rows
    finally:
        client.close()
    by_sink = [
        (reason, origin.rsplit("/", 1)[0]) for reason, source, origin, _ in letters if source == "sink"
    ]
    assert sorted(by_sink) == [
        (reason, f"{settings.windows_topic}/0") for reason in ("malformed", "undecodable_batch")
    ]
    letters = [letter for letter in letters if letter[1] != "sink"]
    assert Counter(reason for reason, *_ in letters) == expected_letters
    assert {source for _, source, *_ in letters} == {"stream"}
    details = {reason: [detail for r, _, _, detail in letters if r == reason] for reason in expected_letters}
    assert sorted("BadGzipFile" in detail for detail in details["undecodable_batch"]) == [False, True]
    assert any("Invalid CRC" in detail for detail in details["undecodable_batch"])
    origins = [origin for reason, _, origin, _ in letters if reason == "undecodable_batch"]
    assert all(origin.startswith(f"{topic}/1/") for origin in origins)
    assert all("looks like milliseconds" in detail for detail in details["out_of_window"])

    assert sink_metrics[("omstream_events_stored_total", ())] == len(events.rows)
    assert sink_metrics[("omstream_undecodable_batches_total", (("topic", topic),))] == 2
    # the sink process reads the window rows twice: its store and its alert detector each skip the batch
    assert sink_metrics[("omstream_undecodable_batches_total", (("topic", settings.windows_topic),))] == 2
    for reason, count in expected_letters.items():
        assert worker_metrics[("omstream_dead_letters_total", (("reason", reason),))] == count, reason
