-- The real-time rows as reports and dashboards read them: the latest version of each partition's row
-- (FINAL), and of each window only the rows of the earliest broker epoch that counted it. An
-- embedded broker keeps events in memory only, so a restarted one counts a window that was open
-- anew from what arrives after it; that partial count never replaces nor adds to the earlier one.
-- The epoch's rank is the top 16 bits of `version` (stream.windows.VERSION_RANK_SHIFT = 48): an
-- earlier epoch ranks higher.
CREATE VIEW IF NOT EXISTS realtime_window_rows AS
SELECT kind, window_start, partition, pv, fav, cart, buy, uv, final, version
FROM realtime_windows FINAL
WHERE (kind, window_start, bitShiftRight(version, 48)) IN
    (SELECT kind, window_start, max(bitShiftRight(version, 48)) FROM realtime_windows GROUP BY kind, window_start);

CREATE VIEW IF NOT EXISTS realtime_funnel_rows AS
SELECT kind, window_start, partition, pv_users, cart_users, buy_users, final, version
FROM realtime_funnel FINAL
WHERE (kind, window_start, bitShiftRight(version, 48)) IN
    (SELECT kind, window_start, max(bitShiftRight(version, 48)) FROM realtime_funnel GROUP BY kind, window_start);
