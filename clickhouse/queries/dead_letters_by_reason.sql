-- Rejected inputs per reason and source (replay, stream, window), received (stored) on days {from} to
-- {to} in {tz}: a rejected input may have no event time, so it is placed by when it arrived.
SELECT reason, source, count() AS rejected
FROM dead_letters FINAL
WHERE received_at >= toDateTime({from:Date}, {tz:String}) AND received_at < toDateTime({to:Date} + 1, {tz:String})
GROUP BY reason, source
ORDER BY reason, source
