-- Cohort retention: a user's cohort is their first active day (in {tz}) within the range; dN = share of
-- the cohort active (any event) on cohort day + N, for N = 1..8. NULL when cohort day + N is after the
-- last day of the range that has data (not observable yet).
WITH
    (
        SELECT toDate(max(ts), {tz:String}) FROM events
        WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    ) AS last_day,
    arrayMap(n -> if(cohort + n <= last_day, retained[n] / users, NULL), range(1, 9)) AS rates
SELECT
    toString(cohort) AS cohort_date,
    count() AS users,
    sumForEach(arrayMap(n -> toUInt64(has(days, cohort + n)), range(1, 9))) AS retained,
    rates[1] AS d1, rates[2] AS d2, rates[3] AS d3, rates[4] AS d4,
    rates[5] AS d5, rates[6] AS d6, rates[7] AS d7, rates[8] AS d8
FROM
(
    SELECT groupUniqArray(toDate(ts, {tz:String})) AS days, arrayMin(days) AS cohort
    FROM events
    WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    GROUP BY user_id
)
GROUP BY cohort
ORDER BY cohort
