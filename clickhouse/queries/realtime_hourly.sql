-- Real-time hourly activity from the stream's hour windows (see the realtime_window_rows view).
SELECT
    formatDateTime(toTimeZone(w.window_start, {tz:String}), '%Y-%m-%d %H:00') AS window_start,
    sum(w.pv) AS pv, sum(w.uv) AS uv, sum(w.cart) AS cart, sum(w.fav) AS fav, sum(w.buy) AS buy
FROM realtime_window_rows AS w
WHERE w.kind = 'hour'
GROUP BY w.window_start
ORDER BY w.window_start
