-- Per hour of day (0-23, in {tz}) over the range: pv = pv events, uv = distinct users active in that hour
-- on any day, buyers = distinct users who bought in that hour, pay_rate = buyers / uv.
SELECT
    toHour(ts, {tz:String}) AS hour,
    countIf(behavior = 'pv') AS pv,
    uniqExact(user_id) AS uv,
    uniqExactIf(user_id, behavior = 'buy') AS buyers,
    buyers / uv AS pay_rate,
    countIf(behavior = 'fav') AS fav,
    countIf(behavior = 'cart') AS cart,
    countIf(behavior = 'buy') AS buy
FROM events
WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
GROUP BY hour
ORDER BY hour
