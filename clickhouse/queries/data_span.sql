-- First and last calendar day in {tz} that has events: the report's default date range.
SELECT toString(toDate(min(ts), {tz:String})) AS first_day, toString(toDate(max(ts), {tz:String})) AS last_day
FROM distinct_events
