"""Apply `clickhouse/migrations/NNNN_name.sql` in order, each once, recorded in `schema_migrations`.

The migrations are written for one server. With a cluster name, `migrate` renders them for a
ClickHouse cluster instead (`render_for_cluster`): every MergeTree-family table becomes a Replicated
table `<name>_local` on each node plus a Distributed table `<name>` over them, so writers and queries
keep using the same table names.
"""

from __future__ import annotations

import re
from importlib.resources import files

from clickhouse_connect.driver.client import Client

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(version String, applied_at DateTime DEFAULT now())
ENGINE = ReplacingMergeTree ORDER BY version
"""


def _migration_files() -> list[tuple[str, str]]:
    folder = files("clickhouse").joinpath("migrations")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text()) for name in names]


def _statements(script: str) -> list[str]:
    # Migrations hold no string literal containing ';' followed by a newline, so this split is safe.
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in code.split(";\n") if statement.strip(" ;\n")]


def migrate(client: Client, cluster: str = "") -> list[str]:
    """Bring the schema up to date; returns the versions applied now (empty when already current).

    `cluster` (a `remote_servers` name of the server config) creates Replicated and Distributed
    tables ON CLUSTER instead of single-server ones.
    """

    def statements(script: str) -> list[str]:
        return render_for_cluster(script, cluster) if cluster else _statements(script)

    for statement in statements(_LEDGER):
        client.command(statement)
    applied = {row[0] for row in client.query("SELECT version FROM schema_migrations FINAL").result_rows}
    # on a cluster the ledger is Distributed: the insert must reach its shard before the next migrate reads it
    ledger_settings = {"insert_distributed_sync": 1} if cluster else None
    done = []
    for version, script in _migration_files():
        if version in applied:
            continue
        for statement in statements(script):
            client.command(statement.rstrip(";"))
        client.insert("schema_migrations", [[version]], column_names=["version"], settings=ledger_settings)
        done.append(version)
    return done


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CREATE = re.compile(
    r"^CREATE\s+(?P<kind>TABLE|(?:MATERIALIZED\s+)?VIEW)\s+(?P<exists>IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)",
    re.IGNORECASE,
)
# Statements that act on whole tables or views by name, as they are, on every node
_BY_NAME = re.compile(
    r"^(?P<head>DROP\s+VIEW\s+(?:IF\s+EXISTS\s+)?\w+|RENAME\s+TABLE\s+\w+\s+TO\s+\w+)\s*$", re.IGNORECASE
)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(?P<engine>\w*MergeTree)\b", re.IGNORECASE)
_ORDER_BY = re.compile(r"\bORDER\s+BY\s+", re.IGNORECASE)


def render_for_cluster(script: str, cluster: str) -> list[str]:
    """The statements of a migration script for the ClickHouse cluster `cluster`.

    A `CREATE TABLE name ... ENGINE = XMergeTree(args)` becomes `name_local` ON CLUSTER with engine
    `ReplicatedXMergeTree('/clickhouse/tables/{shard}/{database}/name_local', '{replica}', args)`
    (the servers define the `shard` and `replica` macros), followed by `name` ON CLUSTER as a
    Distributed table over it, sharded by a hash of the sorting key: copies of a row that
    ReplacingMergeTree must collapse always land on the same shard, so `FINAL` stays exact.
    Views get ON CLUSTER and read the Distributed tables; so do `DROP VIEW` and `RENAME TABLE` (a
    renamed table is the Distributed one: its Replicated tables keep their name). Any other statement
    is refused, since a wrong guess would split the schema across nodes.
    """
    if not _IDENTIFIER.fullmatch(cluster):
        raise ValueError(f"invalid ClickHouse cluster name {cluster!r}")
    rendered = []
    for statement in (statement.rstrip(" ;\n") for statement in _statements(script)):
        by_name = _BY_NAME.match(statement)
        if by_name is not None:
            rendered.append(f"{by_name['head']} ON CLUSTER {cluster}")
            continue
        create = _CREATE.match(statement)
        if create is None:
            raise ValueError(
                f"cannot render for a cluster (only CREATE TABLE/VIEW, DROP VIEW, RENAME TABLE): "
                f"{statement[:60]!r}"
            )
        engine = _ENGINE.search(statement) if create["kind"].upper() == "TABLE" else None
        if engine is not None:
            rendered += _replicated_and_distributed(statement, create, engine, cluster)
        else:
            rendered.append(_on_cluster(statement, create, create["name"], cluster))
    return rendered


def _on_cluster(statement: str, create: re.Match[str], name: str, cluster: str) -> str:
    return f"{statement[: create.start('name')]}{name} ON CLUSTER {cluster}{statement[create.end() :]}"


def _replicated_and_distributed(
    statement: str, create: re.Match[str], engine: re.Match[str], cluster: str
) -> list[str]:
    name, local = create["name"], f"{create['name']}_local"
    order_by = _ORDER_BY.search(statement)
    if order_by is None:
        raise ValueError(f"table {name} has no MergeTree engine with ORDER BY")
    arguments_end, arguments = _parenthesised(statement, engine.end())
    replicated_arguments = [f"'/clickhouse/tables/{{shard}}/{{database}}/{local}'", "'{replica}'"]
    replicated_arguments += [arguments] if arguments else []
    replicated = f"ENGINE = Replicated{engine['engine']}({', '.join(replicated_arguments)})"
    table = statement[: engine.start()] + replicated + statement[arguments_end:]
    table = _on_cluster(table, create, local, cluster)
    key_end, key = _parenthesised(statement, order_by.end())
    if key_end == order_by.end():  # a bare sorting key: `ORDER BY column`
        key = statement[order_by.end() :].split(maxsplit=1)[0]
    exists = "IF NOT EXISTS " if create["exists"] else ""
    distributed = (
        f"CREATE TABLE {exists}{name} ON CLUSTER {cluster} AS {local}\n"
        f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, cityHash64({key}))"
    )
    return [table, distributed]


def _parenthesised(text: str, start: int) -> tuple[int, str]:
    """(end, inside) of the balanced parentheses opening at `start` (spaces skipped), or (start, "")."""
    opening = len(text) - len(text[start:].lstrip())
    if not text.startswith("(", opening):
        return start, ""
    depth = 0
    for index in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index + 1, text[opening + 1 : index].strip()
    raise ValueError(f"unbalanced parentheses in {text[start : start + 60]!r}")
