-- User paths: a session is a user's run of events with gaps <= {gap} seconds (30 min by default); its
-- path is its behaviours in time order with consecutive repeats collapsed (pv pv cart -> pv, cart).
-- Returns every distinct path with its number of sessions, most frequent first.
-- A user's timeline packs each event into one number, ts * 8 + the behaviour's code (the events
-- table's Enum8 values, 1 to 4): sorting it sorts by time (then code), and it is cheap to gather.
SELECT
    arrayMap(code -> toString(CAST(code, 'Enum8(\'pv\' = 1, \'fav\' = 2, \'cart\' = 3, \'buy\' = 4)')), codes) AS path,
    sessions
FROM
(
    SELECT arrayCompact(arrayMap(event -> toUInt8(event % 8), session)) AS codes, count() AS sessions
    FROM
    (
        SELECT arraySort(groupArray(toUInt64(toUInt32(ts)) * 8 + toUInt8(behavior))) AS timeline
        FROM events
        WHERE ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
        GROUP BY user_id
    )
    ARRAY JOIN
        arraySplit((event, i) -> i = 1 OR intDiv(event, 8) - intDiv(timeline[i - 1], 8) > {gap:UInt32},
                   timeline, arrayEnumerate(timeline)) AS session
    GROUP BY codes
)
ORDER BY sessions DESC, path
