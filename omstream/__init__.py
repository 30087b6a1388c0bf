"""OMStream: user-behaviour analytics over Kafka, Faust and ClickHouse, with an ops control plane.

This package holds the `omstream` command line and the embedded runtime; the pipeline itself lives
in `stream`, `control`, `masters` and `clickhouse`.
"""

from omstream.settings import Settings

__all__ = ["Settings"]
