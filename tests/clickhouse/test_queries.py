"""The catalogue's definitions on a hand-made data set whose every figure is worked out in the comments:
day boundaries in the time zone, the date range, cohorts and unobservable days, repurchase, the ordered
funnel window, sessions and paths, RFM, category and item rankings, the Pareto cut and the MAD rule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

import clickhouse
from clickhouse import query_rows

DAY0 = 1_511_539_200  # 2017-11-25 00:00 China time
HOUR, DAY = 3_600, 86_400
CST = "Asia/Shanghai"
# (user, item, category, behavior, seconds after DAY0)
EVENTS = [
    (1, 100, 10, "pv", 10 * HOUR),  # d0: u1 pv > cart > buy in one session
    (1, 100, 10, "cart", 10 * HOUR + 300),
    (1, 100, 10, "buy", 10 * HOUR + 600),
    (1, 100, 10, "pv", DAY + 10 * HOUR),  # d1
    (1, 100, 10, "buy", 2 * DAY + 9 * HOUR),  # d2: a buy on a second day
    (2, 200, 20, "pv", DAY - 30),  # d0 23:59:30, then d1 00:00:30: one session over midnight
    (2, 200, 20, "pv", DAY + 30),
    (2, 200, 20, "cart", DAY + 40 * 60),  # 39.5 min later: a new session
    (2, 200, 20, "buy", 3 * DAY),  # d3: more than 24 h after the pv, outside the funnel window
    (3, 101, 10, "fav", DAY + 12 * HOUR),  # u3's cohort is d1
    (3, 101, 10, "pv", 2 * DAY + 12 * HOUR),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    chdb = clickhouse.connect(f"chdb://{tmp_path_factory.mktemp('queries') / 'chdb'}")
    try:
        clickhouse.migrate(chdb)
        rows = [
            [user, item, category, behavior, DAY0 + offset]
            for user, item, category, behavior, offset in EVENTS
        ]
        chdb.insert("events_raw", rows, column_names=["user_id", "item_id", "category_id", "behavior", "ts"])
        yield chdb
    finally:
        chdb.close()


def run(
    client: Client, name: str, tz: str = CST, first: int = 0, last: int = 3, **extra: Any
) -> list[dict[str, Any]]:
    days = {"from": date(2017, 11, 25 + first), "to": date(2017, 11, 25 + last)}
    return query_rows(client, name, tz=tz, **days, **extra)


def test_daily_activity_counts_days_in_the_time_zone(client: Client) -> None:
    daily = [
        (r["date"], r["pv"], r["uv"], r["new_users"], r["buyers"], r["buys"])
        for r in run(client, "daily_activity")
    ]
    assert daily == [
        ("2017-11-25", 2, 2, 2, 1, 1),
        ("2017-11-26", 2, 3, 1, 0, 0),
        ("2017-11-27", 1, 2, 0, 1, 1),
        ("2017-11-28", 0, 1, 0, 1, 1),
    ]
    utc = run(client, "daily_activity", tz="UTC")
    assert (utc[0]["date"], utc[0]["pv"]) == ("2017-11-25", 3)  # u2's two pvs share a UTC day


def test_the_date_range_bounds_every_query(client: Client) -> None:
    totals = {row["behavior"]: row["events"] for row in run(client, "behavior_totals", first=1, last=1)}
    assert totals == {"pv": 2, "fav": 1, "cart": 1}
    assert [row["date"] for row in run(client, "daily_activity", first=1, last=2)] == [
        "2017-11-26",
        "2017-11-27",
    ]


def test_retention_by_cohort_leaves_unobservable_days_null(client: Client) -> None:
    cohorts = {row["cohort_date"]: row for row in run(client, "retention")}
    first, second = cohorts["2017-11-25"], cohorts["2017-11-26"]
    assert first["users"] == 2 and [first[f"d{n}"] for n in (1, 2, 3, 4)] == [1.0, 0.5, 0.5, None]
    assert second["users"] == 1 and [second[f"d{n}"] for n in (1, 2, 3)] == [1.0, 0.0, None]
    curve = {
        row["day"]: (row["eligible"], row["retained"]) for row in run(client, "retention_curve", days=30)
    }
    assert curve == {1: (3, 3), 2: (3, 1), 3: (2, 1)}


def test_repurchase_and_purchase_frequency(client: Client) -> None:
    assert run(client, "repurchase_rate") == [{"buyers": 2, "repurchasers": 1, "repurchase_rate": 0.5}]
    assert run(client, "purchase_frequency") == [{"buyers": 2, "buys": 3, "buys_per_buyer": 1.5}]
    assert run(client, "purchase_frequency_distribution") == [
        {"buys": 1, "buyers": 1},
        {"buys": 2, "buyers": 1},
    ]


def test_ordered_funnel_respects_the_window(client: Client) -> None:
    users = run(client, "funnel_users", window=DAY)[0]
    assert (users["pv_users"], users["cart_users"], users["buy_users"]) == (3, 2, 1)
    assert run(client, "funnel_users", window=4 * DAY)[0]["buy_users"] == 2


def test_sessions_split_on_gaps_and_collapse_repeats(client: Client) -> None:
    paths = {tuple(row["path"]): row["sessions"] for row in run(client, "session_paths", gap=1_800)}
    assert paths == {("pv",): 3, ("buy",): 2, ("pv", "cart", "buy"): 1, ("cart",): 1, ("fav",): 1}


def test_rfm_segments(client: Client) -> None:
    segments = {row["segment"]: row["buyers"] for row in run(client, "rfm", recent_days=3, frequent_buys=2)}
    assert segments == {"champions": 1, "promising": 1}
    assert {row["segment"] for row in run(client, "rfm", recent_days=0, frequent_buys=2)} == {
        "at_risk",
        "promising",
    }


def test_category_and_item_rankings_and_undefined_ratios(client: Client) -> None:
    common: dict[str, Any] = {"level": "category", "category": 0, "top": 10, "min_visitors": 1}
    by_sales = run(client, "sales_stats", order="sales", **common)
    assert [(r["category_id"], r["buys"], r["buyers"], r["visitors"]) for r in by_sales] == [
        (10, 2, 1, 2),
        (20, 1, 1, 1),
    ]
    assert by_sales[0]["pay_rate"] == 0.5 and by_sales[0]["fav_to_buy"] == 2.0
    assert by_sales[1]["fav_to_buy"] is None  # no fav: undefined, not infinite
    assert [r["category_id"] for r in run(client, "sales_stats", order="pay_rate", **common)] == [20, 10]
    assert (
        run(client, "sales_stats", order="pay_rate", **{**common, "min_visitors": 2})[0]["category_id"] == 10
    )
    items = run(client, "sales_stats", order="sales", **{**common, "level": "item", "category": 10})
    assert [(r["item_id"], r["buys"]) for r in items] == [(100, 2), (101, 0)]


def test_pareto_cut_is_the_first_rank_reaching_80_percent(client: Client) -> None:
    curve = run(client, "category_pareto")
    assert [(r["rank"], r["category_id"], r["cumulative_buys"], r["reaches_80pct"]) for r in curve] == [
        (1, 10, 2, 0),
        (2, 20, 3, 1),
    ]


def test_pv_anomalies_use_k_mads_from_the_median(client: Client) -> None:
    # daily PV 2, 2, 1, 0: median 1.5, MAD 0.5; the last day is 3 MADs below
    assert run(client, "pv_anomalies", k=3.0) == []
    flagged = run(client, "pv_anomalies", k=2.0)
    assert [(r["date"], r["median_pv"], r["mad"], r["deviations"]) for r in flagged] == [
        ("2017-11-28", 1.5, 0.5, -3.0)
    ]
