"""The HTML report: one self-contained file (charts inlined as PNG data URIs, no network), plus the PNGs."""

from __future__ import annotations

import base64
from dataclasses import asdict
from html import escape
from pathlib import Path

from report._alerts import alert_table
from report._build import Report, Row
from report._charts import CHARTS, render_png
from report._text import cell, items_title, period

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
"""
# Marks the page once every chart has decoded, so a headless browser (and the tests) can tell the charts
# rendered, not merely that the page loaded.
_CHECK_CHARTS = """
window.addEventListener("load", () => {
  const charts = [...document.querySelectorAll("img.chart")];
  const drawn = charts.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.chartsRendered = `${drawn}/${charts.length}`;
});
"""


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


def _table(rows: list[Row]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{escape(str(name))}</th>" for name in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell(v))}</td>" for v in row.values()) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figures(report: Report) -> list[Row]:
    ltv, pareto, repurchase = report.ltv, report.category_pareto, report.repurchase_rate
    return [
        {"figure": "buys per buyer", "value": report.purchase_frequency.buys_per_buyer},
        {"figure": f"repurchase rate ({repurchase.definition})", "value": repurchase.repurchase_rate},
        {"figure": "cart / pv", "value": report.funnel_counts["cart_per_pv"]},
        {"figure": "fav-to-buy (buy / fav)", "value": report.fav_to_buy.overall},
        {"figure": "cart-to-buy (buy / cart)", "value": report.cart_to_buy.overall},
        {"figure": "categories with sales", "value": pareto.categories_with_sales},
        {"figure": "categories making 80 % of sales", "value": pareto.categories_for_80pct},
        {"figure": "LT (expected active days)", "value": ltv.lt_days},
        {"figure": "LTV (LT x ARPU)", "value": ltv.ltv},
        {"figure": "LTV / CAC", "value": ltv.ltv_to_cac},
        {"figure": "payback (days)", "value": ltv.payback_days},
    ]


def _page(report: Report, charts: dict[str, str]) -> str:
    days = f"{period(report)} ({report.timezone})"
    rule = [{"rule": day, **asdict(check)} for day, check in report.retention_rule.items()]
    sequences = [asdict(sequence) for sequence in report.paths.top_sequences]
    sections = [
        ("Key figures", _table(_figures(report))),
        ("Daily activity", charts["daily"] + _table(report.daily)),
        ("PV anomalies", _table(report.anomalies)),
        ("Hour of day", charts["hourly"]),
        ("Funnel", charts["funnel"] + _table([report.funnel_counts])),
        ("Retention", charts["retention"] + _table(rule)),
        ("Categories", charts["pareto"] + _table(report.category_sales_top)),
        (items_title(report.items), _table(report.items.sales_top)),
        ("User paths", charts["paths"] + _table(sequences)),
        ("RFM segments", _table(report.rfm.segments)),
        ("Anomaly alerts (real time)", _table(alert_table(report.realtime.alerts))),
    ]
    body = "".join(f"<h2>{escape(title)}</h2>{content}" for title, content in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>OMStream report {escape(days)}</title><style>{_STYLE}</style>"
        f"<script>{_CHECK_CHARTS}</script></head>"
        f"<body><h1>OMStream report</h1><p>{escape(days)}</p>{body}</body></html>"
    )
