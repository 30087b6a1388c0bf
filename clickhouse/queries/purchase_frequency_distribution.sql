-- Distribution of buys per buyer: for each number of buy events in the range, how many buyers made it.
SELECT buys, count() AS buyers
FROM
(
    SELECT user_id, count() AS buys
    FROM events
    WHERE behavior = 'buy'
      AND ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    GROUP BY user_id
)
GROUP BY buys
ORDER BY buys
