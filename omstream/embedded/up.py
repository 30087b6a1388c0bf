"""`omstream up`: the embedded stack as a small service manager, until Ctrl-C (see `supervisor`).

It starts a Tansu broker, the sink (which also answers read-only queries over ClickHouse's HTTP
interface on loopback, with a password generated per run), a stream worker, and the control plane,
restarts any of them that exits, and tells other commands where the broker and the query endpoint
are (`<state>/broker.json`, `<state>/clickhouse.json`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from omstream.embedded.accept import describe
from omstream.embedded.control_plane import control_plane_services, wait_for_masters
from omstream.embedded.running import QUERY_ENDPOINT_FILE, announce_broker, announce_query_endpoint
from omstream.embedded.stack import (
    broker_service,
    free_port,
    omstream_service,
    topic_partitions,
    wait_until_accepting,
)
from omstream.embedded.supervisor import NotReady, Supervisor, claim_state_dir
from omstream.settings import Settings
from stream.kafka import ensure_topics
from stream.sources.taobao import UnreadableFile, file_window

_ENDPOINT_TIMEOUT_S = 60.0

# What a restart of `omstream up` keeps: said at start, since the broker keeps topics in memory only.
KEEPS = (
    "ClickHouse keeps everything stored; the broker keeps its topics in memory, so events not yet "
    "stored when `omstream up` stops are lost"
)


def run_up(settings: Settings, say: Callable[[str], None]) -> None:
    """Run the stack until KeyboardInterrupt (Ctrl-C, SIGTERM) or until its broker exits."""
    with claim_state_dir(settings.state_dir, "up", say):
        supervisor = Supervisor(settings.state_dir, "up", say, details={"accept": _accept_settings(settings)})
        try:
            _start(supervisor, settings, say)
            supervisor.watch()
        except KeyboardInterrupt:
            say("stopping")
        finally:
            for name in ("broker.json", QUERY_ENDPOINT_FILE):
                (settings.state_dir / name).unlink(missing_ok=True)
            supervisor.stop()


def _start(supervisor: Supervisor, settings: Settings, say: Callable[[str], None]) -> None:
    port = free_port()
    broker = supervisor.start(broker_service(settings.state_dir, port))
    bootstrap = f"127.0.0.1:{port}"
    wait_until_accepting(broker, bootstrap)
    asyncio.run(ensure_topics(bootstrap, topic_partitions(settings)))
    announce_broker(settings.state_dir, bootstrap, broker)
    # With the embedded ClickHouse, the sink (its one owner) answers the readers' queries.
    query = None if settings.clickhouse_dsn else (free_port(), secrets.token_urlsafe(24))
    sink = settings
    if query is not None:
        sink = settings.model_copy(update={"query_port": query[0], "query_password": SecretStr(query[1])})
    supervisor.start(omstream_service(sink, bootstrap, "sink", "sink"))
    supervisor.start(omstream_service(settings, bootstrap, "worker", "worker"))
    plane = control_plane_services(settings, bootstrap)
    masters = [supervisor.start(service) for service, _ in plane.masters]
    wait_for_masters(settings, plane, masters)
    supervisor.start(plane.control)
    clickhouse = "ClickHouse at CLICKHOUSE_DSN"
    if query is not None:
        _wait_for_endpoint(supervisor, query[0])
        endpoint = announce_query_endpoint(settings.state_dir, *query)
        clickhouse = f"ClickHouse (read-only HTTP) at 127.0.0.1:{query[0]}, user and password in {endpoint}"
    say(
        f"omstream up: Kafka at {bootstrap}; {clickhouse}; IDCs bj and sh with two masters each, operator "
        f"key `demo` in {settings.keys_dir}; services and PIDs in {settings.state_dir / 'up.json'}; "
        "Ctrl-C to stop"
    )
    say(f"accepting events of {_describe_accept(settings)}; {KEEPS}")


def _wait_for_endpoint(supervisor: Supervisor, port: int) -> None:
    """Until the sink answers queries (restarting services meanwhile, as always)."""
    deadline = time.monotonic() + _ENDPOINT_TIMEOUT_S

    def answers() -> bool:
        if time.monotonic() > deadline:
            raise NotReady(f"the sink did not answer queries within {_ENDPOINT_TIMEOUT_S:.0f} s")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=0.5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    supervisor.watch(until=answers)


def _accept_settings(settings: Settings) -> dict[str, object]:
    """The settings that say which event times the services accept, for `omstream replay` to read."""
    names = {"accept_from", "accept_to", "accept_days_back", "accept_seconds_ahead"}
    return settings.model_dump(mode="json", include=names)


def _describe_accept(settings: Settings) -> str:
    return describe(settings.accept_range, settings.timezone)


def window_of(path: Path, settings: Settings) -> Settings:
    """The settings, accepting the window of a historical file (for `omstream up --window-of`)."""
    if not path.is_file():
        raise UnreadableFile(f"no such file: {path}")
    return settings.with_window(file_window(path, settings.timezone))
