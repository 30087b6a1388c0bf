"""Real-time anomaly alerts over the global minutes of the window rows (see `detector`)."""

from stream.alerts.baseline import BaselineRules
from stream.alerts.detector import CLOSED, DOWN, OPEN, UP, Alert, AlertRules, Detector, alert_id
from stream.alerts.minutes import METRICS, MinuteAssembler, MinuteTotals

__all__ = [
    "CLOSED",
    "DOWN",
    "METRICS",
    "OPEN",
    "UP",
    "Alert",
    "AlertRules",
    "BaselineRules",
    "Detector",
    "MinuteAssembler",
    "MinuteTotals",
    "alert_id",
]
