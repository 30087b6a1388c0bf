"""A peer of `omstream bench stream`: Pathway's hourly PV/UV over all users, on the same broker.

Run as `python -m omstream.bench.pathway_peer BOOTSTRAP TOPIC EVENTS` (it needs the `bench` extra).
Pathway's Kafka connector (librdkafka, in a consumer group of its own, from the earliest offset)
parses each single-event JSON message into a table; `windowby` a 1 h tumbling window over event time
(`ts`, epoch-aligned) reduces it to the count and the distinct count of `user_id`. Pathway updates
the windows once per commit (`_COMMIT_MS`): the sum of their counts is the messages seen so far.
Once that reaches EVENTS it prints the samples and the hourly PV/UV (see `_peer`) and exits.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

import pathway as pw

from omstream.bench._peer import HOUR_S, Samples, print_result

_COMMIT_MS = 200  # how often read messages enter the computation: the samples' resolution


class EventTime(pw.Schema):
    """The fields the hourly PV/UV needs; the message's other fields are left unread."""

    user_id: int
    ts: int


class HourlyWindows:
    """The windows' current PV/UV, kept from Pathway's updates (a changed row is a removal and an
    insertion), sampled at the end of each of its times."""

    def __init__(self, samples: Samples) -> None:
        self.samples = samples
        self.hourly: dict[int, tuple[int, int]] = {}

    def on_change(self, key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
        if is_addition:
            self.hourly[row["hour"]] = (row["pv"], row["uv"])
        elif self.hourly.get(row["hour"]) == (row["pv"], row["uv"]):
            del self.hourly[row["hour"]]

    def on_time_end(self, time: int) -> None:
        self.samples.count_to(sum(pv for pv, _ in self.hourly.values()))
        if self.samples.done:
            print_result(self.samples, self.hourly)
            # a streaming Pathway run never returns (a Kafka topic has no end): leave once all is seen
            os._exit(0)


def hourly_pv_uv(events: pw.Table) -> pw.Table:
    hours = events.windowby(events.ts, window=pw.temporal.tumbling(duration=HOUR_S, origin=0))
    return hours.reduce(
        hour=pw.this._pw_window_start,
        pv=pw.reducers.count(),
        uv=pw.reducers.count_distinct(pw.this.user_id),
    )


def main() -> None:
    bootstrap, topic, expected = sys.argv[1:4]
    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": f"pathway-peer-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        # Tansu holds a JoinGroup for half the session timeout: librdkafka's default would cost 22 s
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1500",
    }
    events = pw.io.kafka.read(
        settings, topic, schema=EventTime, format="json", autocommit_duration_ms=_COMMIT_MS
    )
    windows = HourlyWindows(Samples(int(expected)))
    pw.io.subscribe(hourly_pv_uv(events), on_change=windows.on_change, on_time_end=windows.on_time_end)
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)


if __name__ == "__main__":
    main()
