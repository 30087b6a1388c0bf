-- Per category over the range: buys = buy events (sales), buyers = distinct users who bought in it,
-- visitors = distinct users with any event in it, pay_rate = buyers / visitors, fav_to_buy = buy / fav,
-- cart_to_buy = buy / cart. Top {top} by {order} ('sales' or 'pay_rate'), among categories with at least
-- {min_visitors} visitors (a pay rate over a handful of visitors is noise).
SELECT
    category_id,
    countIf(behavior = 'buy') AS buys,
    uniqExactIf(user_id, behavior = 'buy') AS buyers,
    uniqExact(user_id) AS visitors,
    buyers / visitors AS pay_rate,
    buys / nullIf(countIf(behavior = 'fav'), 0) AS fav_to_buy,
    buys / nullIf(countIf(behavior = 'cart'), 0) AS cart_to_buy
FROM distinct_events
WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
GROUP BY category_id
HAVING visitors >= {min_visitors:UInt64}
ORDER BY if({order:String} = 'pay_rate', pay_rate, toFloat64(buys)) DESC, buys DESC, category_id
LIMIT {top:UInt32}
