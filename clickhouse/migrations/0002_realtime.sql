-- Real-time window results written by the stream workers, one row per (window, source partition).
-- Users are partitioned by user_id, so a window's UV is the sum of its partitions' UVs.
-- A row is rewritten as its window fills; the highest version (the partition's source offset at
-- write time) wins, and `final` = 1 once the window has closed. Rewriting a row after a restart or a
-- rebalance gives the same values, so reads stay exact.
CREATE TABLE IF NOT EXISTS realtime_windows
(
    kind         LowCardinality(String),  -- minute, hour, day, rolling_1h
    window_start DateTime('UTC'),
    partition    UInt16,
    pv           UInt64,
    fav          UInt64,
    cart         UInt64,
    buy          UInt64,
    uv           UInt64,
    final        UInt8,
    version      UInt64,
    written_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (kind, window_start, partition);

-- Ordered per-user funnel pv -> cart -> buy per hour and day window: users reaching each step.
CREATE TABLE IF NOT EXISTS realtime_funnel
(
    kind         LowCardinality(String),  -- hour, day
    window_start DateTime('UTC'),
    partition    UInt16,
    pv_users     UInt64,
    cart_users   UInt64,
    buy_users    UInt64,
    final        UInt8,
    version      UInt64,
    written_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (kind, window_start, partition);
