from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from clickhouse._queries import load_query


class ClickHouseUnavailable(RuntimeError):
    """The DSN could not be opened (server down, or a chDB directory held by another process)."""


def _held_by_another_process(directory: Path) -> bool:
    """chDB, like ClickHouse, holds an exclusive lock on `<dir>/status` while a process has it open."""
    try:
        with (directory / "status").open("rb") as status:
            fcntl.flock(status, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(status, fcntl.LOCK_UN)
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
    return False


def connect(dsn: str) -> Client:
    if dsn.startswith("chdb://") and _held_by_another_process(Path(dsn.removeprefix("chdb://"))):
        raise ClickHouseUnavailable(
            f"ClickHouse at {dsn} is open in another process (the sink of a running `omstream up`?): "
            "stop it first, or set CLICKHOUSE_DSN to a ClickHouse server"
        )
    try:
        return clickhouse_connect.get_client(dsn=dsn)
    except Exception as error:  # the driver raises many types; callers need one clear message
        where = dsn.split("@")[-1]  # never echo a password
        raise ClickHouseUnavailable(f"cannot open ClickHouse at {where}: {error}") from error


def query_rows(client: Client, name: str, **parameters: Any) -> list[dict[str, Any]]:
    """Run the named query of `clickhouse/queries/` and return its rows as dicts."""
    result = client.query(load_query(name), parameters=parameters)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
