-- Day-N retention over all cohorts of the range (cohort = first active day in {tz}), N = 1..{days}:
-- rate = users active on their cohort day + N / users whose cohort day + N is observable (<= the last day
-- of the range with data). Days with no observable cohort are left out.
WITH
    (
        SELECT toDate(max(ts), {tz:String}) FROM events
        WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    ) AS last_day
SELECT
    n AS day,
    countIf(cohort + n <= last_day) AS eligible,
    countIf(cohort + n <= last_day AND has(days, cohort + n)) AS retained,
    retained / eligible AS rate
FROM
(
    SELECT groupUniqArray(toDate(ts, {tz:String})) AS days, arrayMin(days) AS cohort
    FROM events
    WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    GROUP BY user_id
)
ARRAY JOIN range(1, {days:UInt16} + 1) AS n
GROUP BY n
HAVING eligible > 0
ORDER BY n
