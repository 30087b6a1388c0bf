-- Daily PV anomalies: a day is flagged when its PV is more than {k} median absolute deviations (MAD) from
-- the median daily PV of the range. pv_per_uv beside it tells new visitors (PV/UV steady, UV up) from
-- heavier use (PV/UV up). Medians are exact (the mean of the two middle values for an even count).
WITH
    days AS
    (
        SELECT toDate(ts, {tz:String}) AS day, countIf(behavior = 'pv') AS pv, uniqExact(user_id) AS uv
        FROM distinct_events
        WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
        GROUP BY day
    ),
    (SELECT quantileExactInclusive(0.5)(toFloat64(pv)) FROM days) AS median_pv,
    (SELECT quantileExactInclusive(0.5)(abs(pv - median_pv)) FROM days) AS mad,
    (SELECT quantileExactInclusive(0.5)(pv / uv) FROM days) AS typical_pv_per_uv
SELECT
    toString(day) AS date,
    pv,
    uv,
    pv / uv AS pv_per_uv,
    median_pv,
    typical_pv_per_uv AS median_pv_per_uv,
    mad,
    (pv - median_pv) / nullIf(mad, 0) AS deviations
FROM days
WHERE abs(pv - median_pv) > {k:Float64} * mad
ORDER BY day
