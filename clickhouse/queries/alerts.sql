-- Anomaly alerts of the real-time detector (stream/alerts), newest first: each alert once, as its
-- latest record says (`open` while it lasts, `closed` once over). Listed when its minutes overlap
-- [since, until); `status` '' lists every alert, 'open' only those still open. `time`, `timeEnd` and
-- `text` are the columns Grafana draws an annotation from.
SELECT
    window_start AS time,
    window_end   AS timeEnd,
    concat(metric, ' ', direction, ': ', toString(round(observed, 4)), ' per minute, ',
           toString(round(expected, 4)), ' expected (score ', toString(round(score, 1)), ')') AS text,
    metric,
    direction,
    status,
    window_start,
    window_end,
    observed,
    expected,
    score,
    raised_at,
    event_time_at_raise,
    alert_id
FROM alerts FINAL
WHERE window_end > {since:DateTime} AND window_start < {until:DateTime}
  AND ({status:String} = '' OR status = {status:String})
ORDER BY window_start DESC, metric, direction
LIMIT {limit:UInt32}
