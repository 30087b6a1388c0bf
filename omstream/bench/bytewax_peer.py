"""A peer of `omstream bench stream`: Bytewax's hourly PV/UV over all users, on the same broker.

Run as `python -m omstream.bench.bytewax_peer BOOTSTRAP TOPIC EVENTS` (it needs the `bench` extra).
One worker reads every partition of TOPIC from the earliest offset up to its end (`tail=False`),
decodes each single-event JSON message, keys all events alike and folds them into 1 h tumbling
windows (epoch-aligned) on an event-time clock (`ts`): per window the count and the set of users.
Each event folded in is counted; at the end it prints the samples and the hourly PV/UV (see `_peer`).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
from bytewax.run import cli_main
from bytewax.testing import TestingSink

from omstream.bench._peer import HOUR_S, Samples, print_result

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The source reads the partitions in turns of up to 1,000 messages each, so event time runs out of
# order across them by hours (days in a small run). An exact count waits for every late event: the
# windows close at the end of the input, not on a watermark.
_LATENESS = timedelta(days=30)


class HourCounts:
    """One window's state: its events, and its distinct users."""

    def __init__(self) -> None:
        self.pv = 0
        self.users: set[int] = set()

    def merge(self, other: HourCounts) -> HourCounts:
        self.pv += other.pv
        self.users |= other.users
        return self


def hourly_flow(source: Source[Any], samples: Samples, results: list[Any], late: list[Any]) -> Dataflow:
    def decode(message: KafkaSourceMessage) -> dict[str, Any]:
        event: dict[str, Any] = orjson.loads(message.value)
        return event

    def fold(counts: HourCounts, event: dict[str, Any]) -> HourCounts:
        counts.pv += 1
        counts.users.add(event["user_id"])
        samples.count()
        return counts

    flow = Dataflow("bytewax-peer")
    events = op.map("decode", op.input("events", flow, source), decode)
    clock: EventClock[dict[str, Any]] = EventClock(
        lambda event: datetime.fromtimestamp(event["ts"], UTC), _LATENESS
    )
    windows = fold_window(
        "hourly",
        op.key_on("all", events, lambda _: "all"),
        clock,
        TumblingWindower(length=timedelta(seconds=HOUR_S), align_to=_EPOCH),
        builder=HourCounts,
        folder=fold,
        merger=HourCounts.merge,
    )
    op.output("windows", windows.down, TestingSink(results))
    op.output("late", windows.late, TestingSink(late))
    return flow


def hourly_of(results: list[Any]) -> dict[int, tuple[int, int]]:
    """The windows' PV/UV by hour start: a tumbling window's id counts lengths from `align_to`."""
    return {window_id * HOUR_S: (counts.pv, len(counts.users)) for _, (window_id, counts) in results}


def main() -> None:
    bootstrap, topic, expected = sys.argv[1:4]
    samples, results, late = Samples(int(expected)), list[Any](), list[Any]()
    cli_main(hourly_flow(KafkaSource([bootstrap], [topic], tail=False), samples, results, late))
    if late:
        sys.exit(f"{len(late)} events arrived after their window closed")
    print_result(samples, hourly_of(results))


if __name__ == "__main__":
    main()
