"""The read-only query endpoint over this process's chDB: ClickHouse's HTTP interface as clickhouse-connect
and Grafana's plugin speak it, and nothing that writes (to the tables, or to files) gets through."""

from __future__ import annotations

import base64
import gzip
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

import clickhouse
from clickhouse._native import BLOCK_INFO
from stream.events import Event
from stream.sinks.clickhouse import insert_events

EVENT = Event(user_id=7, item_id=2, category_id=3, behavior="buy", ts=1_511_544_070)
WRITES = {
    "insert": "INSERT INTO events (user_id) VALUES (1)",
    "insert as data": 'INSERT INTO events (user_id) FORMAT JSONEachRow {"user_id": 1}',
    "insert into file()": "INSERT INTO FUNCTION file('{out}', 'TSV', 'a String') VALUES ('x')",
    "create": "CREATE TABLE t (a Int8) ENGINE = Memory",
    "create temporary": "CREATE TEMPORARY TABLE t (a Int8)",
    "drop": "DROP TABLE events",
    "truncate": "TRUNCATE TABLE events",
    "alter": "ALTER TABLE events DELETE WHERE 1",
    "optimize": "OPTIMIZE TABLE events FINAL",
    "system": "SYSTEM STOP MERGES",
    "set": "SET readonly = 0",
    "settings clause": "SELECT 1 SETTINGS readonly = 0",
    "kill": "KILL QUERY WHERE 1",
    "use": "USE system",
    "two statements": "SELECT 1; DROP TABLE events",
    "into outfile": "SELECT * FROM events INTO OUTFILE '{out}'",
    "show into outfile": "SHOW TABLES INTO OUTFILE '{out}'",
    "file()": "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "file() in a subquery": "SELECT * FROM (SELECT * FROM file('/etc/hostname', 'LineAsString'))",
    "file() as a function": "SELECT file('/etc/hostname')",
    "describe file()": "DESCRIBE TABLE file('/etc/hostname', 'LineAsString')",
    "url()": "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
    "executable()": "SELECT * FROM executable('x.sh', 'TSV', 'a String')",
    "remote()": "SELECT * FROM remote('127.0.0.1:9000', system.one)",
    "backup": "BACKUP TABLE events TO Disk('default', 'b.zip')",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[clickhouse.QueryServer]:
    """The sink's situation: its own chDB client writes while the server answers readers."""
    directory = tmp_path_factory.mktemp("query") / "chdb"
    sink = clickhouse.connect(f"chdb://{directory}")
    clickhouse.migrate(sink)
    insert_events(sink, [EVENT])
    server = clickhouse.QueryServer(directory).start()
    try:
        yield server
    finally:
        server.stop()  # before the engine closes with the sink's client
        sink.close()


@pytest.fixture(scope="module")
def reader(server: clickhouse.QueryServer) -> Client:
    return clickhouse.connect(f"http://{server.user}:{server.password}@{server.host}:{server.port}/omstream")


@pytest.mark.parametrize("statement", WRITES.values(), ids=WRITES.keys())
def test_writes_and_file_access_are_refused(reader: Client, tmp_path: Path, statement: str) -> None:
    out = tmp_path / "out.tsv"
    with pytest.raises(DatabaseError) as refused:
        reader.command(statement.replace("{out}", str(out)))
    assert "READONLY" in str(refused.value) or "SYNTAX_ERROR" in str(refused.value)
    assert not out.exists()
    assert reader.command("SELECT count() FROM events") == 1


def test_clickhouse_connect_reads_native_results_and_parameters(
    reader: Client, server: clickhouse.QueryServer
) -> None:
    assert reader.server_version == server.engine.version
    rows = reader.query(
        "SELECT user_id, behavior, ts FROM events WHERE user_id = {user:UInt64}", parameters={"user": 7}
    ).result_rows
    assert [(user, behavior, int(ts.timestamp())) for user, behavior, ts in rows] == [(7, "buy", EVENT.ts)]
    with pytest.raises(DatabaseError, match="UNKNOWN_TABLE"):
        reader.query("SELECT * FROM no_such_table")


def test_clickhouse_connect_reads_show_create_and_exists_whose_table_is_an_identifier(reader: Client) -> None:
    # their AST's first identifier is the table, not the FORMAT the client adds
    statement = reader.query("SHOW CREATE TABLE events_raw").result_rows[0][0]
    assert statement.startswith("CREATE TABLE") and "ReplacingMergeTree" in statement
    view = reader.query("SHOW CREATE TABLE events").result_rows[0][0]
    assert view.startswith("CREATE VIEW") and "FROM default.events_raw" in view
    assert reader.query("EXISTS TABLE events").result_rows == [(1,)]


def test_a_wrong_password_is_refused(server: clickhouse.QueryServer) -> None:
    with pytest.raises(clickhouse.ClickHouseUnavailable, match="AUTHENTICATION_FAILED"):
        clickhouse.connect(f"http://{server.user}:wrong@{server.host}:{server.port}/omstream")


def post(server: clickhouse.QueryServer, sql: str, **parameters: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"http://{server.host}:{server.port}/?{urlencode(parameters)}", data=sql.encode(), method="POST"
    )
    token = base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Accept-Encoding", "gzip")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_requests_shaped_like_grafanas_plugin(server: clickhouse.QueryServer) -> None:
    """clickhouse-go over HTTP: Native for its protocol revision, its settings, gzip when it asks."""
    grafana = {"database": "omstream", "default_format": "Native", "client_protocol_version": "54460",
               "max_execution_time": "65", "limit": "1000000", "enable_http_compression": "1"}  # fmt: skip
    status, headers, body = post(server, "SELECT count() AS n FROM events", **grafana)
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    native = gzip.decompress(body)
    # block info, 1 column, 1 row, "n" UInt64, the custom-serialization flag of revision >= 54454, 1
    assert native == BLOCK_INFO + b"\x01\x01\x01n\x06UInt64\x00" + (1).to_bytes(8, "little")
    status, headers, body = post(server, "SELECT 1", max_threads="64")
    assert status == 403 and headers["X-ClickHouse-Exception-Code"] == "164"
    assert body.startswith(b"Code: 164. DB::Exception: Cannot modify 'max_threads' setting in readonly mode")
