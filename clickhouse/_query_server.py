"""Read-only queries over ClickHouse's HTTP interface, answered by the chDB engine of this process.

In embedded mode only one process may open the chDB directory: the sink. It serves this on loopback
so that `omstream report`, `ops history`, the tests and a local Grafana can read the live data. The
protocol is ClickHouse's own, as far as clickhouse-connect's HTTP client and Grafana's ClickHouse
plugin (clickhouse-go over HTTP) use it.

A request is answered in four steps:
1. authentication (Basic, `X-ClickHouse-User`/`X-ClickHouse-Key`, or `user`/`password` parameters);
2. its settings: transport parameters are ignored, `param_*` are query parameters, and only a short
   list of settings may be set (numeric limits clamped), as for a `readonly=1` user;
3. a chDB connection of its own with `readonly=1`, so the engine refuses writes, DDL, SET and SYSTEM;
4. the statement checked with the engine's parser: one statement (`formatQuerySingleLine`), whose
   `EXPLAIN AST` is a read, without INTO OUTFILE, without `file()`, and with table functions from an
   allow-list, because `readonly=1` alone lets `INTO OUTFILE`, `file()`, `DESCRIBE url(...)` and
   `KILL QUERY` through.
Native results are re-encoded for the client's protocol revision (see `_native`).
"""

from __future__ import annotations

import base64
import gzip
import hmac
import json
import re
import secrets
import socket
import threading
import uuid
import zlib
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import chdb

from clickhouse._native import NativeUnsupported, reencode

# Parameters of the HTTP interface itself, not settings: accepted and ignored
_TRANSPORT_PARAMETERS = frozenset(
    {
        "query", "database", "default_format", "query_id", "session_id", "session_timeout",
        "session_check", "wait_end_of_query", "user", "password", "quota_key", "buffer_size",
        "client_protocol_version", "enable_http_compression", "http_zlib_compression_level",
        "send_progress_in_http_headers", "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close", "role", "add_http_cors_header", "decompress",
        "compress", "http_wait_end_of_query", "http_write_exception_in_output_format",
    }
)  # fmt: skip
# Settings a reader may set (clickhouse-go always sends max_execution_time, Grafana `limit`)
_ALLOWED_SETTINGS = frozenset(
    {
        "max_execution_time", "limit", "offset", "max_result_rows", "max_result_bytes",
        "result_overflow_mode", "max_rows_to_read", "max_bytes_to_read", "read_overflow_mode",
        "max_block_size", "extremes", "date_time_output_format", "session_timezone",
        "output_format_json_quote_64bit_integers", "output_format_json_quote_denormals",
        "output_format_json_named_tuples_as_objects", "output_format_decimal_trailing_zeros",
        "join_use_nulls", "aggregate_functions_null_for_empty", "use_query_cache",
    }
)  # fmt: skip
# Statement kinds (the root of EXPLAIN AST) that only read
_READ_STATEMENTS = frozenset(
    {
        "SelectWithUnionQuery", "SelectIntersectExceptQuery", "ShowTables", "ShowColumns",
        "DescribeQuery", "ExistsTableQuery", "ExistsDatabaseQuery", "ExistsDictionaryQuery",
        "ExistsViewQuery", "ShowCreateTableQuery", "ShowCreateViewQuery", "ShowCreateDatabaseQuery",
        "ShowCreateDictionaryQuery", "Explain",
    }
)  # fmt: skip
# Table functions that read nothing but the engine's own tables
_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values", "view",
     "null", "merge", "generaterandom", "one"}
)  # fmt: skip
# Functions that read files or load code
_DENIED_FUNCTIONS = frozenset({"file", "catboostevaluate", "modelevaluate", "naivebayesclassifier"})
# Production DSNs and the Grafana provisioning name the database `omstream`; chDB keeps the tables
# in `default`.
_DATABASE_ALIASES = {"omstream": "default"}
# Limits on every reader's connection: readers share the sink's CPU and memory.
_FORCED_SETTINGS = {
    "max_threads": "2",
    "max_memory_usage": str(2 << 30),
    "output_format_native_write_json_as_string": "1",
}
_CAPS = {"max_execution_time": 60, "max_result_bytes": 512 << 20}
# ClickHouse's HTTP status per exception code, for the codes a reader can meet
_HTTP_STATUS = {
    516: 401, 164: 403, 497: 403, 62: 400, 27: 400, 36: 400, 456: 400, 457: 400, 6: 400, 53: 400,
    60: 404, 81: 404, 47: 400, 46: 400, 42: 400, 43: 400, 48: 501, 73: 400, 159: 500, 396: 500,
}  # fmt: skip
_CONTENT_TYPES = {
    "Native": "application/octet-stream",
    "RowBinary": "application/octet-stream",
    "RowBinaryWithNamesAndTypes": "application/octet-stream",
    "Arrow": "application/octet-stream",
    "Parquet": "application/octet-stream",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
}
_TEXT = "text/tab-separated-values; charset=UTF-8"
_SETTING_VALUE = re.compile(r"^[A-Za-z0-9_.:/+\-]{0,64}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMAT = re.compile(r"^[A-Za-z0-9]+$")
_CODE = re.compile(r"Code: (\d+)\. ")


class QueryError(Exception):
    """A ClickHouse exception: its code and its `Code: N. DB::Exception: ... (NAME)` text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _refused(what: str) -> QueryError:
    return QueryError(164, f"Code: 164. DB::Exception: {what}: this interface is read-only. (READONLY)")


def _engine_error(error: Exception) -> QueryError:
    text = str(error).strip()
    text = text[text.find("Code: ") :] if "Code: " in text else text
    match = _CODE.search(text)
    if match is None:
        return QueryError(1001, f"Code: 1001. DB::Exception: {text}. (STD_EXCEPTION)")
    return QueryError(int(match.group(1)), text)


def _tsv_escaped(value: str) -> str:
    """A query parameter's value as the engine reads it (TSV-escaped, as from `param_x=`)."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


@dataclass(frozen=True)
class Answer:
    body: bytes
    format: str
    summary: dict[str, str]


class ReadOnlyEngine:
    """Runs one request's statement on its own read-only connection to the chDB directory."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory.resolve())  # chDB opens a directory it already has by the same path only
        connection = chdb.connect(f"{self.path}?readonly=1")
        try:
            answer = connection.query("SELECT version(), timezone()", "TSV").bytes().decode()
        finally:
            connection.close()
        self.version, self.timezone = answer.split()

    def run(self, sql: str, parameters: dict[str, str]) -> Answer:
        query_parameters = {
            name[6:]: value for name, value in parameters.items() if name.startswith("param_")
        }
        if parameters.get("compress") == "1":
            raise QueryError(
                48, "Code: 48. DB::Exception: compress=1 is not supported here. (NOT_IMPLEMENTED)"
            )
        default_format = parameters.get("default_format") or "TabSeparated"
        if not _FORMAT.match(default_format):
            raise QueryError(
                73, f"Code: 73. DB::Exception: Unknown format {default_format}. (UNKNOWN_FORMAT)"
            )
        try:
            connection = chdb.connect(self._connection_string(parameters))
        except Exception as error:  # chDB raises plain exceptions carrying ClickHouse's text
            raise _engine_error(error) from None
        try:
            statement, named_format = _checked(connection, sql, query_parameters)
            output = named_format or default_format
            try:
                result = connection.query(statement, output, params=query_parameters)
            except Exception as error:
                raise _engine_error(error) from None
            body = result.bytes() or b""
            summary = {
                "read_rows": str(result.rows_read()),
                "read_bytes": str(result.bytes_read()),
                "written_rows": "0",
                "written_bytes": "0",
                "result_bytes": str(len(body)),
                "elapsed_ns": str(int(result.elapsed() * 1e9)),
            }
        finally:
            connection.close()
        revision = int(parameters.get("client_protocol_version") or 0)
        if output == "Native" and revision > 0:
            try:
                body = reencode(body, revision)
            except NativeUnsupported as error:
                raise QueryError(48, f"Code: 48. DB::Exception: {error}. (NOT_IMPLEMENTED)") from None
        return Answer(body, output, summary)

    def _connection_string(self, parameters: dict[str, str]) -> str:
        settings = _settings_of(parameters)
        options = {name: value for name, value in _FORCED_SETTINGS.items() if name not in settings}
        options |= settings
        options["readonly"] = "1"  # last: nothing before can lift it
        database = parameters.get("database")
        if database:
            if not _IDENTIFIER.match(database):
                raise QueryError(
                    81, f"Code: 81. DB::Exception: Database {database} does not exist. (UNKNOWN_DATABASE)"
                )
            options = {"database": _DATABASE_ALIASES.get(database, database), **options}
        return f"{self.path}?{urlencode(options)}"


def _settings_of(parameters: dict[str, str]) -> dict[str, str]:
    """The settings a request asks for, as a `readonly=1` user may set them, limits clamped."""
    settings: dict[str, str] = {}
    for name, value in parameters.items():
        if name in _TRANSPORT_PARAMETERS or name.startswith("param_"):
            continue
        if name not in _ALLOWED_SETTINGS:
            raise QueryError(
                164, f"Code: 164. DB::Exception: Cannot modify '{name}' setting in readonly mode. (READONLY)"
            )
        if not _SETTING_VALUE.match(value):
            raise QueryError(36, f"Code: 36. DB::Exception: Bad value for setting '{name}'. (BAD_ARGUMENTS)")
        settings[name] = value
    for name, cap in _CAPS.items():
        asked = int(float(settings.get(name) or 0))
        settings[name] = str(cap if asked <= 0 or asked > cap else asked)
    return settings


def _checked(connection: Any, sql: str, parameters: dict[str, str]) -> tuple[str, str | None]:
    """The statement as one canonical read, and the FORMAT it names; a QueryError for anything else."""
    try:
        statement = (
            connection.query(
                "SELECT formatQuerySingleLine({q:String})", "TabSeparatedRaw", params={"q": _tsv_escaped(sql)}
            )
            .bytes()
            .decode()
            .rstrip("\n")
        )
        ast = connection.query(f"EXPLAIN AST {statement}", "TabSeparatedRaw", params=parameters).bytes()
    except Exception as error:
        raise _engine_error(error) from None
    lines = [line for line in ast.decode().split("\n") if line.strip()]
    kind = lines[0].split(" ", 1)[0]
    if kind not in _READ_STATEMENTS:
        raise _refused(kind)
    return statement, _read_ast(kind, lines)


def _read_ast(kind: str, lines: list[str]) -> str | None:
    """Walks EXPLAIN AST's indented lines: refuses INTO OUTFILE and unsafe functions, finds FORMAT."""
    named_format = None
    # the statement's identifier children: SHOW CREATE and EXISTS name their table first, then the FORMAT
    table_first = kind.startswith(("Exists", "ShowCreate"))
    identifiers = 0
    ancestors: list[tuple[int, str]] = []  # (indent, node kind)
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        node = line.strip()
        while ancestors and ancestors[-1][0] >= indent:
            ancestors.pop()
        parent = ancestors[-1][1] if ancestors else ""
        if indent == 1 and node.startswith("Literal"):  # a statement's literal child: INTO OUTFILE 'path'
            raise _refused("INTO OUTFILE")
        if indent == 1 and node.startswith("Identifier "):
            identifiers += 1
            if identifiers > int(table_first):
                named_format = node.split()[1]  # FORMAT name
        if node.startswith("Function "):
            function = node.split()[1]
            if parent == "TableExpression" and function.lower() not in _TABLE_FUNCTIONS:
                raise _refused(f"Table function {function}")
            if function.lower() in _DENIED_FUNCTIONS:
                raise _refused(f"Function {function}")
        ancestors.append((indent, node.split(" ", 1)[0]))
    return named_format


class QueryServer:
    """Serves read-only queries on `host:port` (port 0: any free one) from a thread, until `stop()`."""

    def __init__(
        self,
        directory: Path,
        port: int = 0,
        password: str = "",
        user: str = "omstream",
        host: str = "127.0.0.1",
    ) -> None:
        self.engine = ReadOnlyEngine(directory)
        self.user = user
        self.password = password or secrets.token_urlsafe(24)
        handler = type("Handler", (_Handler,), {"query_server": self})
        self._http = ThreadingHTTPServer((host, port), handler)
        self._http.daemon_threads = True
        self.host, self.port = str(self._http.server_address[0]), int(self._http.server_address[1])
        self._thread = threading.Thread(target=self._http.serve_forever, name="query-server", daemon=True)

    def start(self) -> QueryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering. Call it before the process's own chDB client closes (its engine goes with it)."""
        self._http.shutdown()
        self._http.server_close()

    def authenticated(self, user: str, password: str) -> bool:
        return hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
            password.encode(), self.password.encode()
        )


class _Handler(BaseHTTPRequestHandler):
    query_server: QueryServer  # set on the subclass each QueryServer builds
    protocol_version = "HTTP/1.1"  # keep-alive: both clients pool connections

    def setup(self) -> None:
        super().setup()
        # headers and body leave in separate writes: without this, Nagle and delayed ACKs stall each one
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the sink's log is for the sink."""

    def do_GET(self) -> None:
        self._answer(has_body=False)

    def do_HEAD(self) -> None:
        self._answer(has_body=False)

    def do_POST(self) -> None:
        self._answer(has_body=True)

    def _answer(self, has_body: bool) -> None:
        url = urlsplit(self.path)
        parameters = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = parameters.get("query_id") or str(uuid.uuid4())
        path = url.path.rstrip("/") or "/"
        if path in ("/ping", "/replicas_status") or (
            path == "/" and not has_body and "query" not in parameters
        ):
            self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        if path != "/":
            self._send(404, f"There is no handle {path}\n".encode(), {"Content-Type": "text/plain"})
            return
        try:
            if not self._authenticated(parameters):
                user = parameters.get("user") or "default"
                raise QueryError(
                    516,
                    f"Code: 516. DB::Exception: {user}: Authentication failed: password is incorrect, "
                    "or there is no user with such name. (AUTHENTICATION_FAILED)",
                )
            sql = self._statement(parameters, self._body() if has_body else b"")
            answer = self.query_server.engine.run(sql, parameters)
        except QueryError as error:
            self._send_error(error, query_id)
            return
        except Exception as error:  # never a traceback to the client, nor a dead handler thread
            self._send_error(
                QueryError(1001, f"Code: 1001. DB::Exception: {error}. (STD_EXCEPTION)"), query_id
            )
            return
        headers = {
            "Content-Type": _CONTENT_TYPES.get(answer.format, _TEXT),
            "X-ClickHouse-Format": answer.format,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Summary": json.dumps(answer.summary),
        }
        self._send(200, answer.body, headers, compress=parameters.get("enable_http_compression") == "1")

    def _authenticated(self, parameters: dict[str, str]) -> bool:
        user, password = parameters.get("user", ""), parameters.get("password", "")
        authorization = self.headers.get("Authorization", "")
        if self.headers.get("X-ClickHouse-User"):
            user, password = self.headers["X-ClickHouse-User"], self.headers.get("X-ClickHouse-Key", "")
        elif authorization.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return False
        return self.query_server.authenticated(user, password)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = bytearray()
            while size := int(self.rfile.readline().split(b";")[0], 16):
                raw += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            raw = bytearray(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            return gzip.decompress(raw)
        if encoding == "deflate":
            return zlib.decompress(raw)
        if encoding in ("", "identity"):
            return bytes(raw)
        raise QueryError(
            48, f"Code: 48. DB::Exception: Content-Encoding {encoding} is not supported. (NOT_IMPLEMENTED)"
        )

    def _statement(self, parameters: dict[str, str], body: bytes) -> str:
        """The SQL of a request: the `query` parameter, then the body (or its form's `query` field)."""
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            body = self._form_query(content_type, body, parameters)
        text = body.decode()
        query = parameters.get("query", "")
        sql = f"{query}\n{text}" if query and text else query or text
        if not sql.strip():
            raise QueryError(62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
        return sql

    def _form_query(self, content_type: str, body: bytes, parameters: dict[str, str]) -> bytes:
        form = BytesParser(policy=HTTP_POLICY).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, str] = {}
        for part in form.iter_parts():
            if part.get_filename():
                raise QueryError(
                    48, "Code: 48. DB::Exception: External tables are not supported. (NOT_IMPLEMENTED)"
                )
            content = part.get_content()
            fields[str(part.get_param("name", header="content-disposition"))] = (
                content if isinstance(content, str) else content.decode()
            )
        parameters.update({name: value for name, value in fields.items() if name.startswith("param_")})
        return fields.get("query", "").encode()

    def _send_error(self, error: QueryError, query_id: str) -> None:
        message = error.message.rstrip("\n")
        if "(version " not in message:
            message = f"{message} (version {self.query_server.engine.version})"
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(error.code),
            "X-ClickHouse-Query-Id": query_id,
        }
        self._send(_HTTP_STATUS.get(error.code, 500), f"{message}\n".encode(), headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str], compress: bool = False) -> None:
        encoding = self._encoding() if compress and body else None
        if encoding == "gzip":
            body = gzip.compress(body, 3)
        elif encoding == "deflate":
            body = zlib.compress(body, 3)
        self.send_response(status)
        self.send_header("X-ClickHouse-Server-Display-Name", "omstream-sink")
        self.send_header("X-ClickHouse-Timezone", self.query_server.engine.timezone)
        for name, value in headers.items():
            self.send_header(name, value)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _encoding(self) -> str | None:
        """The first of gzip and deflate the client accepts (the HTTP interface compresses only if asked)."""
        accepted = [
            part.split(";")[0].strip().lower() for part in self.headers.get("Accept-Encoding", "").split(",")
        ]
        return next((encoding for encoding in accepted if encoding in ("gzip", "deflate")), None)
