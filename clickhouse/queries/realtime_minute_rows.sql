-- Each source partition's latest minute row (the realtime_window_rows view) over the last {span}
-- seconds of event time stored: the history the alert detector picks up at start
-- (stream/alerts/service.py), which the window-rows topic may no longer hold once retention ran.
SELECT w.window_start AS window_start, w.partition AS partition,
    w.pv AS pv, w.fav AS fav, w.cart AS cart, w.buy AS buy, w.uv AS uv, w.final AS final, w.version AS version
FROM realtime_window_rows AS w
WHERE w.kind = 'minute'
  AND w.window_start >= (SELECT max(window_start) FROM realtime_windows WHERE kind = 'minute') - {span:UInt32}
ORDER BY w.window_start, w.partition
