"""The schema rendered for a ClickHouse cluster: every migration (present and future ones alike) as
Replicated tables ON CLUSTER plus a Distributed table of the same name, parsed by ClickHouse's own
parser in chDB. chDB has no cluster or Keeper, so the DDL is parsed (`formatQuery`), not run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

import clickhouse
from clickhouse._migrations import _LEDGER, _migration_files, _statements, render_for_cluster
from omstream.settings import Settings

CLUSTER = "omstream_cluster"


@pytest.fixture
def chdb(tmp_path: Path) -> Iterator[Client]:
    # one chDB path per process at a time: closed after each test, like the rest of the suite
    client = clickhouse.connect(f"chdb://{tmp_path / 'ch'}")
    yield client
    client.close()


def scripts() -> list[tuple[str, str]]:
    return [("ledger", _LEDGER), *_migration_files()]


def single_node_tables(script: str) -> dict[str, str]:
    """name -> statement of the MergeTree tables a script creates on one server."""
    tables = {}
    for statement in _statements(script):
        found = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", statement)
        if found and re.search(r"ENGINE = \w*MergeTree", statement):
            tables[found[1]] = statement.rstrip(" ;\n")
    return tables


@pytest.mark.parametrize(("version", "script"), scripts(), ids=[version for version, _ in scripts()])
def test_each_table_becomes_replicated_local_tables_and_a_distributed_table(
    version: str, script: str
) -> None:
    rendered = render_for_cluster(script, CLUSTER)
    assert all(f" ON CLUSTER {CLUSTER}" in statement for statement in rendered)
    for name, original in single_node_tables(script).items():
        local = next(s for s in rendered if s.startswith(f"CREATE TABLE IF NOT EXISTS {name}_local "))
        engine = re.search(r"ENGINE = (\w*MergeTree)(\([^)]*\))?", original)
        assert engine is not None
        replicated = re.search(
            rf"ENGINE = Replicated{engine[1]}\('([^']+)', '\{{replica\}}'(, [^)]+)?\)", local
        )
        assert replicated is not None, local
        assert replicated[1] == f"/clickhouse/tables/{{shard}}/{{database}}/{name}_local"
        assert (replicated[2] or "") == (f", {engine[2].strip('()')}" if engine[2] else "")
        # apart from name, ON CLUSTER and engine, the local table is the single-server one
        undone = local.replace(f"{name}_local ON CLUSTER {CLUSTER}", name).replace(replicated[0], engine[0])
        assert undone == original
        order_by = re.search(r"ORDER BY \(?([^)\n]+)\)?", original)
        assert order_by is not None
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {CLUSTER} AS {name}_local\n"
            f"ENGINE = Distributed({CLUSTER}, currentDatabase(), {name}_local, cityHash64({order_by[1]}))"
        )
        assert distributed in rendered
        assert rendered.index(distributed) == rendered.index(local) + 1


@pytest.mark.parametrize(("version", "script"), scripts(), ids=[version for version, _ in scripts()])
def test_clickhouse_parses_every_rendered_statement(chdb: Client, version: str, script: str) -> None:
    for statement in render_for_cluster(script, CLUSTER):
        formatted = chdb.query("SELECT formatQuery({sql:String})", parameters={"sql": statement}).result_rows
        assert f"ON CLUSTER {CLUSTER}" in formatted[0][0]


def test_views_get_on_cluster_and_read_the_distributed_tables() -> None:
    rendered = [s for _, script in _migration_files() for s in render_for_cluster(script, CLUSTER)]
    views = [s for s in rendered if s.startswith("CREATE VIEW")]
    assert views and all(f" ON CLUSTER {CLUSTER} AS" in view for view in views)
    assert not any("_local" in view for view in views)


def test_bare_and_nested_sorting_keys_and_other_engines() -> None:
    script = (
        "CREATE TABLE t (a UInt8, ts DateTime) ENGINE = SummingMergeTree((a)) "
        "ORDER BY (a, toDate(ts)) SETTINGS index_granularity = 8192;\n"
        "CREATE TABLE b (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
        "CREATE TABLE m (a UInt8) ENGINE = Memory"
    )
    local_t, distributed_t, local_b, distributed_b, memory = render_for_cluster(script, "c")
    assert "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/t_local', " in local_t
    assert local_t.endswith("'{replica}', (a)) ORDER BY (a, toDate(ts)) SETTINGS index_granularity = 8192")
    assert distributed_t.endswith("Distributed(c, currentDatabase(), t_local, cityHash64(a, toDate(ts)))")
    assert local_b == (
        "CREATE TABLE b_local ON CLUSTER c (a UInt8) "
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/b_local', '{replica}') "
        "ORDER BY a"
    )
    assert distributed_b.endswith("Distributed(c, currentDatabase(), b_local, cityHash64(a))")
    assert memory == "CREATE TABLE m ON CLUSTER c (a UInt8) ENGINE = Memory"


@pytest.mark.parametrize(
    "statement",
    ["ALTER TABLE events ADD COLUMN x UInt8", "INSERT INTO events VALUES (1)", "DROP TABLE events"],
)
def test_statements_it_cannot_place_on_a_cluster_are_refused(statement: str) -> None:
    with pytest.raises(ValueError, match="cannot render for a cluster"):
        render_for_cluster(statement, CLUSTER)


@pytest.mark.parametrize("name", ["bad-name", "x; DROP TABLE events", "1st"])
def test_cluster_names_are_identifiers(name: str) -> None:
    with pytest.raises(ValueError, match="invalid ClickHouse cluster name"):
        render_for_cluster(_LEDGER, name)
    with pytest.raises(ValueError):
        Settings(clickhouse_cluster=name)


def test_without_a_cluster_migrate_creates_the_single_server_schema(chdb: Client) -> None:
    applied = clickhouse.migrate(chdb, Settings(clickhouse_cluster="").clickhouse_cluster)
    assert applied == [version for version, _ in _migration_files()]
    tables = chdb.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()")
    engines = {str(name): str(engine) for name, engine in tables.result_rows}
    assert not any(name.endswith("_local") for name in engines)
    assert "Distributed" not in engines.values()
    assert engines["events_raw"] == "ReplacingMergeTree"
    assert engines["events"] == engines["distinct_events"] == "View"
