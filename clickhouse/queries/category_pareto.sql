-- Pareto curve of sales over categories with at least one buy in the range, by descending buys (ties by
-- id): rank, buys, cumulative share of all buys, and reaches_80pct = 1 from the first rank whose
-- cumulative buys are >= 80 % of all buys (integer test, so no rounding decides the cut).
SELECT
    row_number() OVER w AS rank,
    category_id,
    buys,
    sum(buys) OVER w AS cumulative_buys,
    cumulative_buys / sum(buys) OVER () AS cumulative_share,
    cumulative_buys * 5 >= sum(buys) OVER () * 4 AS reaches_80pct
FROM
(
    SELECT category_id, count() AS buys
    FROM events
    WHERE behavior = 'buy'
      AND ts >= toDateTime({from:Date}, {tz:String}) AND ts < toDateTime({to:Date} + 1, {tz:String})
    GROUP BY category_id
)
WINDOW w AS (ORDER BY buys DESC, category_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
ORDER BY rank
