-- Behaviour mix per day in {tz}: events of each behaviour, and each one's share of the day's events.
SELECT
    toString(toDate(ts, {tz:String})) AS date,
    countIf(behavior = 'pv') AS pv,
    countIf(behavior = 'fav') AS fav,
    countIf(behavior = 'cart') AS cart,
    countIf(behavior = 'buy') AS buy,
    fav / count() AS fav_share,
    cart / count() AS cart_share,
    buy / count() AS buy_share
FROM events
WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
GROUP BY date
ORDER BY date
