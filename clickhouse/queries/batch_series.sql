-- PV, UV and behaviour counts per {kind} window (minute, hour, day) over the raw events: the batch
-- computation of what the stream's real-time windows hold (realtime_series), for windows starting on
-- days {from} to {to} in {tz}. Minutes and hours are aligned in UTC, days at midnight in {tz}.
SELECT
    multiIf(
        {kind:String} = 'minute', toStartOfMinute(ts),
        {kind:String} = 'hour', toStartOfHour(ts),
        toDateTime(toStartOfDay(ts, {tz:String}), 'UTC')
    ) AS time,
    countIf(behavior = 'pv') AS pv, uniqExact(user_id) AS uv,
    countIf(behavior = 'fav') AS fav, countIf(behavior = 'cart') AS cart, countIf(behavior = 'buy') AS buy
FROM events
WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
GROUP BY time
ORDER BY time
