"""Prometheus metrics of a master (served by `omstream master` on its metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EXECUTIONS = Counter("omstream_master_executions_total", "Operations run through Salt", ["module", "status"])
REFUSALS = Counter("omstream_master_refusals_total", "Commands the master did not run, by reason", ["reason"])
CONNECTIONS = Gauge("omstream_master_connections", "Open authenticated connections")
AUTHENTICATED = Counter("omstream_master_authenticated_total", "Connections of the control service accepted")
REFUSED = Counter(
    "omstream_master_refused_total",
    "Connections refused before a request: TLS handshake, a peer that is not the control service, too "
    "many handshakes in progress (busy), from one address (peer_busy), or opened too fast by one (rate)",
    ["why"],
)
