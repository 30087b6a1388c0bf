"""Apply `clickhouse/migrations/NNNN_name.sql` in order, each once, recorded in `schema_migrations`."""

from __future__ import annotations

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


def migrate(client: Client) -> list[str]:
    """Bring the schema up to date; returns the versions applied now (empty when already current)."""
    client.command(_LEDGER)
    applied = {row[0] for row in client.query("SELECT version FROM schema_migrations FINAL").result_rows}
    done = []
    for version, script in _migration_files():
        if version in applied:
            continue
        for statement in _statements(script):
            client.command(statement.rstrip(";"))
        client.insert("schema_migrations", [[version]], column_names=["version"])
        done.append(version)
    return done
