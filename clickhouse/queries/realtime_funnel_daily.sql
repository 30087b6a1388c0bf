-- Real-time ordered funnel per day (users reaching pv, then cart, then buy), from the day windows.
SELECT
    toString(toDate(f.window_start, {tz:String})) AS date,
    sum(f.pv_users) AS pv_users, sum(f.cart_users) AS cart_users, sum(f.buy_users) AS buy_users
FROM realtime_funnel_rows AS f
WHERE f.kind = 'day'
GROUP BY f.window_start
ORDER BY f.window_start
