"""`omstream report --json` is an interface: its keys, their order and their JSON types are pinned here, so a
change to how the report is built cannot change what scripts reading it see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from report import ReportOptions
from tests.report.test_report import omstream_cli, report_of_generated

_JSON_TYPES = {str: "str", int: "int", float: "float", bool: "bool", type(None): "null"}

# Over 20,000 generated events with --arpu 1 --cac 5; a list's element is shown once, its types over all
# elements (the stream's tables and dead letters are empty: only events are loaded).
REPORT_JSON_SHAPE = [
    "timezone: str",
    "range.from: str",
    "range.to: str",
    "data_range.from: str",
    "data_range.to: str",
    "complete_to: str",
    "daily[].date: str",
    "daily[].pv: int",
    "daily[].uv: int",
    "daily[].pv_per_uv: float",
    "daily[].new_users: int",
    "daily[].buyers: int",
    "daily[].buys: int",
    "hourly[].hour: int",
    "hourly[].pv: int",
    "hourly[].uv: int",
    "hourly[].buyers: int",
    "hourly[].pay_rate: float",
    "hourly[].fav: int",
    "hourly[].cart: int",
    "hourly[].buy: int",
    "behavior_totals.pv: int",
    "behavior_totals.fav: int",
    "behavior_totals.cart: int",
    "behavior_totals.buy: int",
    "behavior_daily[].date: str",
    "behavior_daily[].pv: int",
    "behavior_daily[].fav: int",
    "behavior_daily[].cart: int",
    "behavior_daily[].buy: int",
    "behavior_daily[].fav_share: float",
    "behavior_daily[].cart_share: float",
    "behavior_daily[].buy_share: float",
    "anomalies[].date: str",
    "anomalies[].pv: int",
    "anomalies[].uv: int",
    "anomalies[].pv_per_uv: float",
    "anomalies[].median_pv: float",
    "anomalies[].median_pv_per_uv: float",
    "anomalies[].mad: float",
    "anomalies[].deviations: float",
    "anomalies[].reason: str",
    "purchase_frequency.buyers: int",
    "purchase_frequency.buys: int",
    "purchase_frequency.buys_per_buyer: float",
    "purchase_frequency.distribution[].buys: int",
    "purchase_frequency.distribution[].buyers: int",
    "fav_to_buy.overall: float",
    "fav_to_buy.top_categories[].category_id: int",
    "fav_to_buy.top_categories[].fav_to_buy: float",
    "fav_to_buy.top_items[].item_id: int",
    "fav_to_buy.top_items[].fav_to_buy: float | null",
    "cart_to_buy.overall: float",
    "cart_to_buy.top_categories[].category_id: int",
    "cart_to_buy.top_categories[].cart_to_buy: float",
    "cart_to_buy.top_items[].item_id: int",
    "cart_to_buy.top_items[].cart_to_buy: float | null",
    "category_sales_top[].category_id: int",
    "category_sales_top[].buys: int",
    "category_sales_top[].buyers: int",
    "category_sales_top[].visitors: int",
    "category_sales_top[].pay_rate: float",
    "category_sales_top[].fav_to_buy: float",
    "category_sales_top[].cart_to_buy: float",
    "category_pay_rate_top[].category_id: int",
    "category_pay_rate_top[].buys: int",
    "category_pay_rate_top[].buyers: int",
    "category_pay_rate_top[].visitors: int",
    "category_pay_rate_top[].pay_rate: float",
    "category_pay_rate_top[].fav_to_buy: float",
    "category_pay_rate_top[].cart_to_buy: float",
    "items.category_id: int",
    "items.sales_top[].category_id: int",
    "items.sales_top[].item_id: int",
    "items.sales_top[].buys: int",
    "items.sales_top[].buyers: int",
    "items.sales_top[].visitors: int",
    "items.sales_top[].pay_rate: float",
    "items.sales_top[].fav_to_buy: float | null",
    "items.sales_top[].cart_to_buy: float | null",
    "items.pay_rate_top[].category_id: int",
    "items.pay_rate_top[].item_id: int",
    "items.pay_rate_top[].buys: int",
    "items.pay_rate_top[].buyers: int",
    "items.pay_rate_top[].visitors: int",
    "items.pay_rate_top[].pay_rate: float",
    "items.pay_rate_top[].fav_to_buy: float | null",
    "items.pay_rate_top[].cart_to_buy: float | null",
    "category_pareto.categories_with_sales: int",
    "category_pareto.categories_for_80pct: int",
    "category_pareto.share_of_categories_for_80pct: float",
    "category_pareto.curve[].rank: int",
    "category_pareto.curve[].cumulative_share: float",
    "retention[].cohort_date: str",
    "retention[].users: int",
    "retention[].retained[]: int",
    "retention[].d1: float",
    "retention[].d2: float",
    "retention[].d3: float",
    "retention[].d4: float | null",
    "retention[].d5: float | null",
    "retention[].d6: float | null",
    "retention[].d7: float | null",
    "retention[].d8: float | null",
    "retention_curve[].day: int",
    "retention_curve[].eligible: int",
    "retention_curve[].retained: int",
    "retention_curve[].rate: float",
    "retention_rule.d1.threshold: float",
    "retention_rule.d1.rate: float",
    "retention_rule.d1.passes: bool",
    "retention_rule.d7.threshold: float",
    "retention_rule.d7.rate: float",
    "retention_rule.d7.passes: bool",
    "retention_rule.d30.threshold: float",
    "retention_rule.d30.rate: null",
    "retention_rule.d30.passes: null",
    "repurchase_rate.buyers: int",
    "repurchase_rate.repurchasers: int",
    "repurchase_rate.repurchase_rate: float",
    "repurchase_rate.definition: str",
    "funnel_counts.pv: int",
    "funnel_counts.fav: int",
    "funnel_counts.cart: int",
    "funnel_counts.buy: int",
    "funnel_counts.fav_per_pv: float",
    "funnel_counts.cart_per_pv: float",
    "funnel_counts.buy_per_pv: float",
    "funnel_counts.fav_to_buy: float",
    "funnel_counts.cart_to_buy: float",
    "funnel_users.window_seconds: int",
    "funnel_users.pv_users: int",
    "funnel_users.cart_users: int",
    "funnel_users.buy_users: int",
    "funnel_users.pv_to_cart: float",
    "funnel_users.cart_to_buy: float",
    "paths.session_gap_seconds: int",
    "paths.sessions: int",
    "paths.top_sequences[].path: str",
    "paths.top_sequences[].sessions: int",
    "paths.top_sequences[].share: float",
    "paths.top_transitions[].from: str",
    "paths.top_transitions[].to: str",
    "paths.top_transitions[].count: int",
    "rfm.recent_days: int",
    "rfm.frequent_buys: int",
    "rfm.segments[].segment: str",
    "rfm.segments[].buyers: int",
    "rfm.segments[].avg_recency_days: float",
    "rfm.segments[].avg_frequency: float",
    "ltv.lt_days: float",
    "ltv.lt_days_observed: float",
    "ltv.horizon_days: int",
    "ltv.fit.intercept: float",
    "ltv.fit.log_slope: float",
    "ltv.arpu: float",
    "ltv.cac: float",
    "ltv.ltv: float",
    "ltv.ltv_to_cac: float",
    "ltv.payback_days: int",
    "dead_letters: []",
    "dead_letters_received: null",
    "realtime.hourly: []",
    "realtime.funnel_daily: []",
    "realtime.alerts: []",
]


def json_shape(value: Any) -> list[str]:
    """`path: types` per leaf, in order of first appearance; `x[]` is an element of list x, and an empty
    dict or list is a leaf typed `{}` or `[]`."""
    shape: dict[str, set[str]] = {}

    def walk(item: Any, path: str) -> None:
        if isinstance(item, dict) and item:
            for key, child in item.items():
                walk(child, f"{path}.{key}" if path else key)
        elif isinstance(item, list) and item:
            for child in item:
                walk(child, f"{path}[]")
        elif isinstance(item, dict | list):
            shape.setdefault(path, set()).add("{}" if isinstance(item, dict) else "[]")
        else:
            shape.setdefault(path, set()).add(_JSON_TYPES[type(item)])

    walk(value, "")
    return [f"{path}: {' | '.join(sorted(kinds))}" for path, kinds in shape.items()]


def test_report_json_keeps_its_keys_order_and_types(tmp_path: Path) -> None:
    state = tmp_path / "state"
    report_of_generated(state, 20_000, ReportOptions())  # loads the data, then frees the chDB directory
    done = omstream_cli("report", "--json", "--arpu", "1", "--cac", "5", state=state)
    assert done.returncode == 0, done.stderr
    assert json_shape(json.loads(done.stdout)) == REPORT_JSON_SHAPE
