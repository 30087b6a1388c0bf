-- Sales per category ({level} = 'category', item_id = 0) or per item of category {category}
-- ({level} = 'item'), over the range: buys = buy events (sales), buyers = distinct users who bought it,
-- visitors = distinct users with any event on it, pay_rate = buyers / visitors, fav_to_buy = buy / fav,
-- cart_to_buy = buy / cart (NULL without favs / carts). Top {top} by {order} ('sales' or 'pay_rate'),
-- among those with at least {min_visitors} visitors (a pay rate over a handful of visitors is noise).
-- {category} = 0: every category.
SELECT
    category_id,
    if({level:String} = 'item', item_id, 0) AS item_id,
    countIf(behavior = 'buy') AS buys,
    uniqExactIf(user_id, behavior = 'buy') AS buyers,
    uniqExact(user_id) AS visitors,
    buyers / visitors AS pay_rate,
    buys / nullIf(countIf(behavior = 'fav'), 0) AS fav_to_buy,
    buys / nullIf(countIf(behavior = 'cart'), 0) AS cart_to_buy
FROM events
WHERE ({category:UInt64} = 0 OR category_id = {category:UInt64})
  AND ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
GROUP BY category_id, item_id
HAVING visitors >= {min_visitors:UInt64}
ORDER BY if({order:String} = 'pay_rate', pay_rate, toFloat64(buys)) DESC, buys DESC, category_id, item_id
LIMIT {top:UInt32}
