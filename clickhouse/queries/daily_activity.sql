-- Per calendar day in {tz}, over days {from} to {to} (inclusive, in {tz}):
--   pv = pv events; uv = distinct active users (active = any event); pv_per_uv = pv / uv;
--   new_users = users whose first active day in the range is this day;
--   buyers = distinct users with a buy that day; buys = buy events.
SELECT
    toString(day) AS date,
    countIf(behavior = 'pv') AS pv,
    uniqExact(user_id) AS uv,
    pv / uv AS pv_per_uv,
    uniqExactIf(user_id, first_day = day) AS new_users,
    uniqExactIf(user_id, behavior = 'buy') AS buyers,
    countIf(behavior = 'buy') AS buys
FROM
(
    SELECT user_id, behavior, toDate(ts, {tz:String}) AS day, min(day) OVER (PARTITION BY user_id) AS first_day
    FROM distinct_events
    WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
)
GROUP BY day
ORDER BY day
