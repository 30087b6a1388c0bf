from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def load_query(name: str) -> str:
    return files("clickhouse").joinpath("queries", f"{name}.sql").read_text()
