"""ClickHouse schema (ordered migrations) and the analytics SQL, each written once in this folder.

`connect` opens either a ClickHouse server (`http://user:pass@host:8123/db`) or embedded chDB
(`chdb:///path`); the same migrations and queries run on both. `QueryServer` answers read-only queries
over ClickHouse's HTTP interface from the chDB engine of the process that owns it.
"""

from clickhouse._client import ClickHouseUnavailable, connect, query_rows
from clickhouse._migrations import migrate
from clickhouse._queries import load_query
from clickhouse._query_server import QueryServer

__all__ = ["ClickHouseUnavailable", "QueryServer", "connect", "load_query", "migrate", "query_rows"]
