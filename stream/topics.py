"""The stream layer's Kafka topics, named once: the emitter, workers, sink and runtime all use these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    events: str = "events"  # user-behaviour events, partitioned by user_id
    dead_letters: str = "events.dlq"  # rejected input, with the reason
    windows: str = "omstream.windows"  # window rows, from the workers to the sink
    checkpoints: str = "omstream.checkpoints"  # where each partition's open windows start
    processed: str = "omstream.processed"  # how far the sink has stored each source
    alerts: str = "omstream.alerts"  # anomaly alerts, raised and closed (stream/alerts)
