"""Prometheus metrics of the control service (served by `omstream control` on its metrics port)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter(
    "omstream_control_commands_total", "Commands received, by outcome and reason", ["status", "reason"]
)
IDC_RESULTS = Counter("omstream_control_idc_results_total", "Per-IDC result sets", ["idc", "status"])
RPC_SECONDS = Histogram(
    "omstream_control_rpc_seconds",
    "rpyc round trip to a master",
    ["master"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FAILOVERS = Counter("omstream_control_failovers_total", "Dispatches moved to another master", ["idc"])
IN_FLIGHT = Gauge("omstream_control_in_flight", "Commands being dispatched")
UNREADABLE = Counter(
    "omstream_control_unreadable_records_total",
    "Records of the control plane's topics skipped because they could not be read (garbage, forged)",
    ["topic"],
)
AUDIT_RECORDS = Counter(
    "omstream_audit_records_total",
    "Records of ops.results by what the sink made of them: result, forgery (stored flagged), "
    "oversized or malformed (skipped)",
    ["kind"],
)


_REPORTED: set[tuple[str, str]] = set()


def skipped(log: logging.Logger, topic: str, why: str, where: str) -> None:
    """A record of an ops topic that could not be read: counted every time, logged the first time it
    happens for its topic and reason in this process (garbage on a topic must not flood the log)."""
    UNREADABLE.labels(topic).inc()
    if (topic, why) not in _REPORTED:
        _REPORTED.add((topic, why))
        log.warning("skipped a record of %s (%s) at %s; more like it are only counted", topic, why, where)
