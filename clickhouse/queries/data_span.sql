-- First and last calendar day in {tz} that has events (NULL without events): the report's default date range.
SELECT
    toString(toDate(minOrNull(ts), {tz:String})) AS first_day,
    toString(toDate(maxOrNull(ts), {tz:String})) AS last_day
FROM events
