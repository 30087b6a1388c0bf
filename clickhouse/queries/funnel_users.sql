-- Ordered per-user funnel over the range: users reaching pv, then cart, then buy, each step within
-- {window} seconds of the chain's first pv (ClickHouse windowFunnel), and the step conversion rates.
SELECT
    countIf(level >= 1) AS pv_users,
    countIf(level >= 2) AS cart_users,
    countIf(level >= 3) AS buy_users,
    cart_users / nullIf(pv_users, 0) AS pv_to_cart,
    buy_users / nullIf(cart_users, 0) AS cart_to_buy
FROM
(
    SELECT user_id, windowFunnel({window:UInt64})(ts, behavior = 'pv', behavior = 'cart', behavior = 'buy') AS level
    FROM events
    WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    GROUP BY user_id
)
