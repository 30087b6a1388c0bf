"""Prometheus metrics of the stream worker and the sink (each serves them on its metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# the two counters `omstream bench` scrapes, by the names they are exposed under
EVENTS_IN_TOTAL = "omstream_events_in_total"
EVENTS_STORED_TOTAL = "omstream_events_stored_total"

EVENTS_IN = Counter(EVENTS_IN_TOTAL, "Events of the events topic whose take a worker has processed")
EVENTS_STORED = Counter(
    EVENTS_STORED_TOTAL,
    "Events written to the raw events table, each once: on the partition its user hashes to",
)
MESSAGES_IN = Counter("omstream_messages_in_total", "Kafka messages read from the events topic")
DEAD_LETTERS = Counter(
    "omstream_dead_letters_total", "Rejected inputs sent to the dead-letter topic", ["reason"]
)
UNDECODABLE_BATCHES = Counter(
    "omstream_undecodable_batches_total",
    "Record batches a consumer could not decode (codec, CRC or corrupt bytes), skipped past",
    ["topic"],
)
DEAD_LETTERS_STORED = Counter("omstream_dead_letters_stored_total", "Dead letters written to ClickHouse")
INSERT_SECONDS = Histogram(
    "omstream_clickhouse_insert_seconds",
    "ClickHouse insert latency",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
INSERT_ROWS = Histogram(
    "omstream_clickhouse_insert_rows",
    "Rows per ClickHouse insert",
    ["table"],
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000),
)
WINDOW_ROWS = Counter("omstream_window_rows_total", "Window result rows written", ["kind", "final"])
REROUTED = Counter(
    "omstream_events_rerouted_total", "Events found on a partition their user does not hash to"
)
WATERMARK = Gauge("omstream_watermark_seconds", "Event-time watermark per source partition", ["partition"])
WATERMARK_LAG = Gauge(
    "omstream_watermark_lag_seconds",
    "Wall clock minus the event-time watermark, per partition",
    ["partition"],
)
HELD_MESSAGES = Gauge(
    "omstream_held_messages", "Fetches of a partition not yet acknowledged: they feed open windows"
)
SNAPSHOT_BYTES = Gauge(
    "omstream_window_snapshot_bytes",
    "Size of a partition's last checkpoint carrying its open windows",
    ["partition"],
)
SNAPSHOTS_TOO_LARGE = Counter(
    "omstream_window_snapshots_too_large_total",
    "Checkpoints with the open windows not written: larger than a message may be",
)
ALERTS = Counter("omstream_alerts_total", "Anomaly alerts raised", ["metric", "direction"])
ALERT_MINUTE = Gauge(
    "omstream_alerts_minute_seconds", "Start of the last complete global minute the alert detector judged"
)
