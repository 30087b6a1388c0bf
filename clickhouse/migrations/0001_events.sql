-- Raw user-behaviour events, one row per distinct event.
-- The natural key (user, time, behaviour, item, category) is the identity: an exact duplicate,
-- whether a dirty input row, a replayed file or a batch re-processed after a crash, collapses into
-- one row. ReplacingMergeTree collapses at merge time; queries read `distinct_events`, which
-- applies FINAL, so they are exact before any merge has happened.
-- Sorting by user then time serves the per-user analyses (retention, funnels, paths).
CREATE TABLE IF NOT EXISTS events
(
    user_id     UInt64,
    item_id     UInt64,
    category_id UInt64,
    behavior    Enum8('pv' = 1, 'fav' = 2, 'cart' = 3, 'buy' = 4),
    ts          DateTime('UTC'),
    channel     LowCardinality(String) DEFAULT '',
    device_id   String DEFAULT '',
    event_id    String DEFAULT '',
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (user_id, ts, behavior, item_id, category_id);

CREATE VIEW IF NOT EXISTS distinct_events AS
SELECT user_id, item_id, category_id, behavior, ts, channel, device_id, event_id
FROM events FINAL;

-- Rejected input (bad JSON, invalid fields, unknown behaviour, out-of-window or late events),
-- with the reason. Keyed by where the input came from (`events/<partition>/<offset>/<index>` for
-- what the stream rejected, the dead-letter topic position otherwise), so a re-processed message
-- or a re-consumed dead letter stays one row.
CREATE TABLE IF NOT EXISTS dead_letters
(
    origin      String,
    reason      LowCardinality(String),
    source      LowCardinality(String),
    detail      String,
    payload     String,
    received_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY origin;
