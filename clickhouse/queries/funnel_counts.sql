-- Event-count funnel over the range: events per behaviour and the conversion ratios between them
-- (cart_per_pv = cart / pv, buy_per_pv = buy / pv, fav_to_buy = buy / fav, cart_to_buy = buy / cart).
SELECT
    countIf(behavior = 'pv') AS pv,
    countIf(behavior = 'fav') AS fav,
    countIf(behavior = 'cart') AS cart,
    countIf(behavior = 'buy') AS buy,
    fav / nullIf(pv, 0) AS fav_per_pv,
    cart / nullIf(pv, 0) AS cart_per_pv,
    buy / nullIf(pv, 0) AS buy_per_pv,
    buy / nullIf(fav, 0) AS fav_to_buy,
    buy / nullIf(cart, 0) AS cart_to_buy
FROM events
WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
