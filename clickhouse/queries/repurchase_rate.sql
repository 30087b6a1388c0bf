-- Repurchase rate = buyers with buys on >= 2 distinct days (in {tz}) / all buyers, over the range.
SELECT
    count() AS buyers,
    countIf(buy_days >= 2) AS repurchasers,
    repurchasers / nullIf(buyers, 0) AS repurchase_rate
FROM
(
    SELECT user_id, uniqExact(toDate(ts, {tz:String})) AS buy_days
    FROM events
    WHERE behavior = 'buy'
      AND ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    GROUP BY user_id
)
