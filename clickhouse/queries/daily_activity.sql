-- Per calendar day in {tz}: PV = pv events, UV = distinct active users (any behaviour).
SELECT
    toString(toDate(ts, {tz:String})) AS date,
    countIf(behavior = 'pv') AS pv,
    uniqExact(user_id) AS uv
FROM distinct_events
GROUP BY date
ORDER BY date
