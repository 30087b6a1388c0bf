-- Daily PV anomalies: a day is flagged when its PV is more than {k} median absolute deviations (MAD) from
-- the median daily PV of the range. pv_per_uv beside it tells new visitors (PV/UV steady, UV up) from
-- heavier use (PV/UV up). Medians are exact (the mean of the two middle values for an even count).
-- The days are aggregated once, into arrays the medians are taken over.
SELECT
    toString(day) AS date,
    pv,
    uv,
    pv / uv AS pv_per_uv,
    median_pv,
    typical_pv_per_uv AS median_pv_per_uv,
    mad,
    (pv - median_pv) / nullIf(mad, 0) AS deviations
FROM
(
    SELECT
        groupArray(day) AS days,
        groupArray(pv) AS pvs,
        groupArray(uv) AS uvs,
        arrayReduce('quantileExactInclusive(0.5)', arrayMap(x -> toFloat64(x), pvs)) AS median_pv,
        arrayReduce('quantileExactInclusive(0.5)', arrayMap(x -> abs(x - median_pv), pvs)) AS mad,
        arrayReduce('quantileExactInclusive(0.5)', arrayMap((p, u) -> p / u, pvs, uvs)) AS typical_pv_per_uv
    FROM
    (
        SELECT toDate(ts, {tz:String}) AS day, countIf(behavior = 'pv') AS pv, uniqExact(user_id) AS uv
        FROM events
        WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
        GROUP BY day
    )
)
ARRAY JOIN days AS day, pvs AS pv, uvs AS uv
WHERE abs(pv - median_pv) > {k:Float64} * mad
ORDER BY day
