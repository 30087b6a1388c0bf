-- User paths: a session is a user's run of events with gaps <= {gap} seconds (30 min by default); its
-- path is its behaviours in time order with consecutive repeats collapsed (pv pv cart -> pv, cart).
-- Returns every distinct path with its number of sessions, most frequent first.
SELECT arrayCompact(arrayMap(e -> toString(e.2), session)) AS path, count() AS sessions
FROM
(
    SELECT arraySort(groupArray((toUInt32(ts), behavior))) AS timeline
    FROM distinct_events
    WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    GROUP BY user_id
)
ARRAY JOIN arraySplit((e, i) -> i = 1 OR e.1 - timeline[i - 1].1 > {gap:UInt32}, timeline, arrayEnumerate(timeline))
    AS session
GROUP BY path
ORDER BY sessions DESC, path
