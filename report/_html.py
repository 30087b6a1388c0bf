"""The HTML report: one self-contained page (charts inlined as PNG data URIs, no network), plus the PNGs.

Every section of the text report is there, in the same order of reading: what to know first, key figures,
then activity, conversion, retention, categories and items, paths, segments, value, rejected input and
what the real-time windows stored. The page fills the window's width; tables keep each value on one line.
"""

from __future__ import annotations

import base64
from dataclasses import asdict
from html import escape
from pathlib import Path

from report._alerts import alert_table
from report._build import Report, Row
from report._charts import CHARTS, render_png
from report._text import (
    ALERTS_TITLE,
    cell,
    dead_letters_title,
    headline,
    items_title,
    period,
    short_retention,
)

_STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2430;
       background: #f5f6f8; }
header { background: #1f3b5c; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 1.6em; }
main { padding: 8px 32px 32px; }
.notes { background: #fff4d6; border-left: 4px solid #e0a800; padding: 8px 16px; margin: 16px 0; }
.notes p { margin: 4px 0; }
section { background: #fff; border-radius: 8px; padding: 12px 20px 16px; margin: 16px 0;
          box-shadow: 0 1px 2px rgba(0, 0, 0, 0.08); }
h2 { font-size: 1.2em; margin: 4px 0 8px; }
h3 { font-size: 1em; margin: 12px 0 4px; color: #444; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }
.card { background: #f0f4f9; border-radius: 6px; padding: 10px 12px; }
.card .value { font-size: 1.5em; font-weight: 600; }
.card .label { font-size: 0.85em; color: #555; }
.tables { display: flex; flex-wrap: wrap; gap: 8px 32px; align-items: flex-start; margin-top: 12px; }
.scroll { max-height: 420px; overflow-y: auto; }
table { border-collapse: collapse; font-size: 0.85em; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #e3e6ea; padding: 3px 10px; text-align: right; white-space: nowrap; }
th { background: #f0f2f5; position: sticky; top: 0; }
td.text, th.text { text-align: left; white-space: normal; min-width: 24em; }
img.chart { width: 100%; height: auto; display: block; margin: 4px 0 8px; }
"""
# Marks the page once every chart has decoded (and how much of the window the narrowest one fills), so a
# headless browser (and the tests) can tell the charts rendered, not merely that the page loaded.
_CHECK_CHARTS = """
window.addEventListener("load", () => {
  const charts = [...document.querySelectorAll("img.chart")];
  const drawn = charts.filter((img) => img.complete && img.naturalWidth > 0).length;
  const narrowest = Math.min(...charts.map((img) => img.getBoundingClientRect().width));
  document.body.dataset.chartsRendered = `${drawn}/${charts.length}`;
  document.body.dataset.chartsWidth = (narrowest / window.innerWidth).toFixed(2);
  document.body.dataset.pageOverflows = String(document.documentElement.scrollWidth > window.innerWidth);
});
"""
_TEXT_COLUMNS = {"reason", "path", "detail", "figure"}  # prose: wraps, left-aligned


def write_html(report: Report, out: Path) -> Path:
    """Write `report.html` and one PNG per chart into `out`; returns the HTML's path."""
    out.mkdir(parents=True, exist_ok=True)
    charts = {}
    for name in CHARTS:
        png = render_png(report, name)
        (out / f"{name}.png").write_bytes(png)
        charts[name] = _chart(name, png)
    page = out / "report.html"
    page.write_text(_page(report, charts), encoding="utf-8")
    return page


def _chart(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="chart" alt="{name} chart" src="data:image/png;base64,{data}">'


def _table(rows: list[Row], title: str = "", scroll: bool = False) -> str:
    heading = f"<h3>{escape(title)}</h3>" if title else ""
    if not rows:
        return f"<div>{heading}<p>(none)</p></div>"

    def kind(column: str) -> str:
        return ' class="text"' if column in _TEXT_COLUMNS else ""

    head = "".join(f"<th{kind(name)}>{escape(str(name))}</th>" for name in rows[0])
    body = "".join(
        "<tr>"
        + "".join(f"<td{kind(name)}>{escape(cell(value, name))}</td>" for name, value in row.items())
        + "</tr>"
        for row in rows
    )
    table = f"<table><tr>{head}</tr>{body}</table>"
    return (
        f"<div>{heading}<div class='scroll'>{table}</div></div>" if scroll else f"<div>{heading}{table}</div>"
    )


def _cards(report: Report) -> str:
    totals, users = report.behavior_totals, report.funnel_users
    figures = [
        ("page views", cell(totals.get("pv"))),
        ("buys", cell(totals.get("buy"))),
        ("visitors reaching a buy", cell(users.buy_users)),
        ("pv > cart", cell(users.pv_to_cart, "share")),
        ("cart > buy", cell(users.cart_to_buy, "share")),
        ("buys per buyer", cell(report.purchase_frequency.buys_per_buyer)),
        ("repurchase rate", cell(report.repurchase_rate.repurchase_rate, "share")),
        ("day-1 retention", cell(report.retention_rule["d1"].rate, "share")),
        ("expected active days (LT)", cell(report.ltv.lt_days)),
        ("rejected inputs", cell(sum(row["rejected"] for row in report.dead_letters))),
    ]
    cards = "".join(
        f"<div class='card'><div class='value'>{escape(value)}</div>"
        f"<div class='label'>{escape(label)}</div></div>"
        for label, value in figures
    )
    return f"<div class='cards'>{cards}</div>"


def _key_figures(report: Report) -> list[Row]:
    ltv, pareto, repurchase = report.ltv, report.category_pareto, report.repurchase_rate
    return [
        {"figure": "buys per buyer", "value": cell(report.purchase_frequency.buys_per_buyer)},
        {
            "figure": f"repurchase rate ({repurchase.definition})",
            "value": cell(repurchase.repurchase_rate, "share"),
        },
        {"figure": "cart / pv", "value": cell(report.funnel_counts["cart_per_pv"], "share")},
        {"figure": "fav-to-buy (buy / fav)", "value": cell(report.fav_to_buy.overall)},
        {"figure": "cart-to-buy (buy / cart)", "value": cell(report.cart_to_buy.overall)},
        {"figure": "categories with sales", "value": cell(pareto.categories_with_sales)},
        {"figure": "categories making 80 % of sales", "value": cell(pareto.categories_for_80pct)},
        {"figure": "LT (expected active days)", "value": cell(ltv.lt_days)},
        {"figure": "LTV (LT x ARPU)", "value": cell(ltv.ltv)},
        {"figure": "LTV / CAC", "value": cell(ltv.ltv_to_cac)},
        {"figure": "payback (days)", "value": cell(ltv.payback_days)},
    ]


def _sections(report: Report, charts: dict[str, str]) -> list[tuple[str, str]]:
    totals = [{"behavior": name, "events": count} for name, count in report.behavior_totals.items()]
    rule = [{"rule": day, **asdict(check)} for day, check in report.retention_rule.items()]
    sequences = [asdict(sequence) for sequence in report.paths.top_sequences]
    realtime = report.realtime

    def side_by_side(*tables: str) -> str:
        return f"<div class='tables'>{''.join(tables)}</div>"

    return [
        ("Key figures", _cards(report) + side_by_side(_table(_key_figures(report)))),
        ("Daily activity", charts["daily"] + _table(report.daily, scroll=True)),
        ("PV anomalies", _table(report.anomalies)),
        ("Hour of day", charts["hourly"] + _table(report.hourly, scroll=True)),
        (
            "Behaviour and funnel",
            charts["funnel"]
            + side_by_side(
                _table(totals, "Behaviour totals"),
                _table([report.funnel_counts], "Funnel (events)"),
                _table([asdict(report.funnel_users)], "Funnel (users, ordered pv > cart > buy)"),
            ),
        ),
        (
            "Retention",
            charts["retention"]
            + side_by_side(
                _table(rule, "The 40-20-10 rule"),
                _table(short_retention(report.retention), "Retention by cohort"),
            ),
        ),
        (
            "Categories",
            charts["pareto"]
            + side_by_side(
                _table(report.category_sales_top, "Top categories by sales"),
                _table(report.category_pay_rate_top, "Top categories by pay rate"),
            ),
        ),
        (
            items_title(report.items),
            side_by_side(_table(report.items.sales_top), _table(report.items.pay_rate_top, "By pay rate")),
        ),
        ("User paths", charts["paths"] + _table(sequences, "Top session paths")),
        ("RFM segments", _table(report.rfm.segments)),
        (dead_letters_title(report), _table(report.dead_letters)),
        (
            "Real-time windows (what the stream stored)",
            side_by_side(
                _table(realtime.hourly, "By hour", scroll=True),
                _table(realtime.funnel_daily, "Funnel by day", scroll=True),
            ),
        ),
        (ALERTS_TITLE, _table(alert_table(realtime.alerts))),
    ]


def _page(report: Report, charts: dict[str, str]) -> str:
    days = f"{period(report)} ({report.timezone})"
    notes = "".join(f"<p>{escape(line)}</p>" for line in headline(report))
    body = "".join(
        f"<section><h2>{escape(title)}</h2>{content}</section>"
        for title, content in _sections(report, charts)
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>OMStream report {escape(days)}</title><style>{_STYLE}</style>"
        f"<script>{_CHECK_CHARTS}</script></head>"
        f"<body><header><h1>OMStream report</h1><div>{escape(days)}</div></header><main>"
        + (f"<div class='notes'>{notes}</div>" if notes else "")
        + f"{body}</main></body></html>"
    )
