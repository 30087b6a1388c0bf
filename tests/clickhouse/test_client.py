"""Opening ClickHouse: a chDB directory held by another process is one clear error, not chDB's noise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import clickhouse

HOLD = """
import sys, clickhouse
client = clickhouse.connect(sys.argv[1])
print("open", flush=True)
sys.stdin.read()
client.close()
"""


def test_a_chdb_directory_open_in_another_process_is_refused_clearly(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, dsn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(clickhouse.ClickHouseUnavailable, match="open in another process"):
            clickhouse.connect(dsn)
    finally:
        holder.communicate("", timeout=30)
    client = clickhouse.connect(dsn)  # free again once the other process closed it
    client.close()
