-- Per calendar day in {tz}, over days {from} to {to} (inclusive, in {tz}):
--   pv = pv events; uv = distinct active users (active = any event); pv_per_uv = pv / uv;
--   new_users = users whose first active day in the range is this day;
--   buyers = distinct users with a buy that day; buys = buy events.
SELECT
    toString(activity.day) AS date,
    activity.pv AS pv,
    activity.uv AS uv,
    pv / uv AS pv_per_uv,
    firsts.new_users AS new_users,
    activity.buyers AS buyers,
    activity.buys AS buys
FROM
(
    SELECT
        toDate(ts, {tz:String}) AS day,
        countIf(behavior = 'pv') AS pv,
        uniqExact(user_id) AS uv,
        uniqExactIf(user_id, behavior = 'buy') AS buyers,
        countIf(behavior = 'buy') AS buys
    FROM events
    WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    GROUP BY day
) AS activity
LEFT JOIN
(
    SELECT first_day AS day, count() AS new_users
    FROM
    (
        SELECT min(toDate(ts, {tz:String})) AS first_day
        FROM events
        WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
        GROUP BY user_id
    )
    GROUP BY first_day
) AS firsts ON activity.day = firsts.day
ORDER BY activity.day
