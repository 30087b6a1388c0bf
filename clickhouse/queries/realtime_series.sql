-- Real-time PV, UV and behaviour counts per {kind} window (minute, hour, day, rolling_1h) from the stream's
-- window rows (the realtime_window_rows view; a window's UV is the sum of its partitions' UVs),
-- for windows starting on days {from} to {to} in {tz}.
SELECT
    w.window_start AS time,
    sum(w.pv) AS pv, sum(w.uv) AS uv, sum(w.fav) AS fav, sum(w.cart) AS cart, sum(w.buy) AS buy
FROM realtime_window_rows AS w
WHERE w.kind = {kind:String}
  AND w.window_start >= toDateTime({from:Date}, {tz:String}) AND w.window_start < toDateTime({to:Date} + 1, {tz:String})
GROUP BY w.window_start
ORDER BY w.window_start
