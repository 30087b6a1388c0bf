-- RFM segments of buyers over the range (no prices in the data, so no M): recency = days from a buyer's
-- last buy to the last day of the range with data (in {tz}); frequency = buy events. Recent means
-- recency <= {recent_days}, frequent means frequency >= {frequent_buys}:
-- champions (recent, frequent), promising (recent only), at_risk (frequent only), hibernating (neither).
WITH
    (
        SELECT toDate(max(ts), {tz:String}) FROM events
        WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    ) AS last_day
SELECT
    multiIf(
        recency <= {recent_days:UInt32} AND frequency >= {frequent_buys:UInt32}, 'champions',
        recency <= {recent_days:UInt32}, 'promising',
        frequency >= {frequent_buys:UInt32}, 'at_risk',
        'hibernating'
    ) AS segment,
    count() AS buyers,
    avg(recency) AS avg_recency_days,
    avg(frequency) AS avg_frequency
FROM
(
    SELECT dateDiff('day', toDate(max(ts), {tz:String}), last_day) AS recency, count() AS frequency
    FROM events
    WHERE behavior = 'buy'
      AND ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    GROUP BY user_id
)
GROUP BY segment
ORDER BY segment
