-- Each calendar day in {tz} that has events, in order: the report's default range is the latest run of
-- them (older data, a demo's 2017 days beside live ones, say, is reported when asked for).
SELECT toString(toDate(ts, {tz:String})) AS day
FROM events
GROUP BY day
ORDER BY day
