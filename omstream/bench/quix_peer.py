"""The peer of `omstream bench stream`: Quix Streams on the same broker, over the same events.

Run as `python -m omstream.bench.quix_peer BOOTSTRAP TOPIC EVENTS MODE STATE_DIR` (it needs the `bench`
extra). In a consumer group of its own it reads TOPIC from the earliest offset:
- `loop`: Quix's consumer in a bare poll loop, decoding each message (the framework's floor);
- `count`: the hourly all-users count a user would write with it: `group_by` a constant key, then a
  1 h tumbling `count().final()` over event time (`ts`).
Once it has seen EVENTS messages it prints its samples (see `_peer`) and exits.
"""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from quixstreams import Application

from omstream.bench._peer import Samples, print_result

_GRACE = timedelta(minutes=10)  # the worker's default grace


def bare_loop(app: Application, topic: str, samples: Samples) -> None:
    with app.get_consumer() as consumer:
        consumer.subscribe([topic])
        while not samples.done:
            for message in consumer.consume(num_messages=1_000, timeout=0.5):
                if message.error() is None:
                    orjson.loads(message.value())
                    samples.count()


def hourly_count(app: Application, topic: str, samples: Samples) -> None:
    def event_time(value: Any, headers: Any, timestamp: float, kind: Any) -> int:
        return int(value["ts"]) * 1000

    def count(value: Any) -> None:
        samples.count()
        if samples.done:
            app.stop()

    frame = app.dataframe(app.topic(topic, value_deserializer="json", timestamp_extractor=event_time))
    frame = frame.group_by(lambda value: "all", name="all").update(count)
    frame.tumbling_window(timedelta(hours=1), grace_ms=_GRACE).count().final()
    app.run()


def main() -> None:
    bootstrap, topic, expected, mode, state_dir = sys.argv[1:6]
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-peer-{mode}-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=Path(state_dir) / mode,
        loglevel="ERROR",
        # Tansu holds a JoinGroup for half the session timeout: librdkafka's default would cost 22 s
        consumer_extra_config={"session.timeout.ms": 6_000, "heartbeat.interval.ms": 1_500},
    )
    samples = Samples(int(expected))
    {"loop": bare_loop, "count": hourly_count}[mode](app, topic, samples)
    print_result(samples)


if __name__ == "__main__":
    main()
