-- Purchase frequency: buys per buyer = buy events / distinct buyers in the range.
SELECT
    uniqExactIf(user_id, behavior = 'buy') AS buyers,
    countIf(behavior = 'buy') AS buys,
    buys / nullIf(buyers, 0) AS buys_per_buyer
FROM events
WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
