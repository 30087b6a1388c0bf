-- Items of category {category} over the range, with the same definitions as category_stats: buys,
-- buyers, visitors, pay_rate = buyers / visitors, fav_to_buy, cart_to_buy; top {top} by {order}.
SELECT
    item_id,
    countIf(behavior = 'buy') AS buys,
    uniqExactIf(user_id, behavior = 'buy') AS buyers,
    uniqExact(user_id) AS visitors,
    buyers / visitors AS pay_rate,
    buys / nullIf(countIf(behavior = 'fav'), 0) AS fav_to_buy,
    buys / nullIf(countIf(behavior = 'cart'), 0) AS cart_to_buy
FROM distinct_events
WHERE category_id = {category:UInt64}
  AND ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
GROUP BY item_id
HAVING visitors >= {min_visitors:UInt64}
ORDER BY if({order:String} = 'pay_rate', pay_rate, toFloat64(buys)) DESC, buys DESC, item_id
LIMIT {top:UInt32}
