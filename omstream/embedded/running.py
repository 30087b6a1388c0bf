"""Finding a running `omstream up` (or `demo`): where it says its broker and query endpoint are.

A run writes `<state>/broker.json` and `<state>/clickhouse.json` for other commands on the same state
directory; `running_status` (the supervisor's `up.json`) tells whether the run that wrote them is alive.
Spawning a broker is `stack`'s; this module only reads and writes the markers.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

from omstream.embedded.supervisor import running_status
from omstream.settings import Settings
from stream.kafka import BrokerUnreachable, broker_accepts, ensure_topics, require_broker


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def announce_broker(state_dir: Path, bootstrap: str, process: subprocess.Popen[bytes]) -> None:
    """Tell other commands (`running_broker`) where the broker of this state directory is."""
    marker = state_dir / "broker.json"
    marker.write_text(json.dumps({"bootstrap": bootstrap, "pid": process.pid, "owner": os.getpid()}))


def running_broker(state_dir: Path) -> str | None:
    """The address of the broker of a running `omstream up`/`demo` on this state directory, if any."""
    marker = state_dir / "broker.json"
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if _pid_alive(int(info["pid"])) and broker_accepts(info["bootstrap"]):
        return str(info["bootstrap"])
    return None


def resolve_bootstrap(settings: Settings) -> str:
    """KAFKA_BOOTSTRAP when set, else the broker of a running `omstream up`; fails clearly otherwise.

    The project's topics that do not exist yet are created with their partition counts: services
    started by hand on a bare broker would otherwise get the broker's defaults on a first produce
    (Tansu: 4 partitions of every topic, the checkpoints' and window rows' included).
    """
    from omstream.embedded.stack import topic_partitions  # stack imports this module

    bootstrap = settings.kafka_bootstrap or running_broker(settings.state_dir)
    if not bootstrap:
        raise BrokerUnreachable(
            f"no Kafka broker: set KAFKA_BOOTSTRAP or start `omstream up` (state dir {settings.state_dir})"
        )
    require_broker(bootstrap)
    # on a loop of its own, not `asyncio.run`: that leaves the thread without a current loop, which
    # Faust (started next by `worker` and `sink`) asks for
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_topics(bootstrap, topic_partitions(settings)))
    finally:
        loop.close()
    return bootstrap


QUERY_ENDPOINT_FILE = "clickhouse.json"


def announce_query_endpoint(state_dir: Path, port: int, password: str) -> Path:
    """Tell other commands where the running sink answers queries, readable by this user only."""
    path = state_dir / QUERY_ENDPOINT_FILE
    path.unlink(missing_ok=True)
    endpoint = {
        "url": f"http://127.0.0.1:{port}",
        "user": "omstream",
        "password": password,
        "database": "omstream",
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(endpoint, file)
    return path


def reader_dsn(settings: Settings) -> str:
    """Where commands read ClickHouse: CLICKHOUSE_DSN, else the query endpoint of the `omstream up` running
    on the state directory, else its chDB directory."""
    if settings.clickhouse_dsn or running_status(settings.state_dir) is None:
        return settings.resolved_clickhouse_dsn
    try:
        endpoint = json.loads((settings.state_dir / QUERY_ENDPOINT_FILE).read_text())
    except (OSError, ValueError):
        return settings.resolved_clickhouse_dsn
    host = endpoint["url"].removeprefix("http://")
    return f"http://{endpoint['user']}:{quote(endpoint['password'], safe='')}@{host}/{endpoint['database']}"
