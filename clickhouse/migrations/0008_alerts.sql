-- Real-time anomaly alerts (stream/alerts), stored by the sink from the `omstream.alerts` topic.
-- An alert has an `open` record (version 0) when raised and a `closed` one (version 1) when over,
-- both with the same id (a hash of metric, direction and window_start) and the same `raised_at`; a
-- detector rebuilt after a restart derives the same ids, so an alert is one row however often its
-- records are stored. Read with FINAL.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id            String,
    metric              LowCardinality(String),  -- pv, uv, cart, fav, buy, pay_rate
    direction           LowCardinality(String),  -- up, down
    status              LowCardinality(String),  -- open, closed
    window_start        DateTime('UTC'),         -- the first deviating minute
    window_end          DateTime('UTC'),         -- the end of the last deviating minute (so far)
    observed            Float64,                 -- mean per minute over the deviating minutes
    expected            Float64,
    score               Float64,                 -- the strongest minute's score (signed)
    raised_at           DateTime64(3, 'UTC'),    -- wall clock when raised
    event_time_at_raise DateTime('UTC'),         -- the event-time watermark when raised
    version             UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id;
