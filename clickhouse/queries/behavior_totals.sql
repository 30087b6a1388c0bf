-- Events per behaviour over days {from} to {to} in {tz} (distinct events).
SELECT toString(behavior) AS behavior, count() AS events
FROM events
WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
GROUP BY behavior
ORDER BY behavior
