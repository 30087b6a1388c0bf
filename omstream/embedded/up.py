"""`omstream up`: the embedded stack as a small service manager, until Ctrl-C (see `supervisor`).

It starts a Tansu broker, the sink (which also answers read-only queries over ClickHouse's HTTP
interface on loopback, with a password generated per run), a stream worker, and the control plane,
restarts any of them that exits, and tells other commands where the broker and the query endpoint
are (`<state>/broker.json`, `<state>/clickhouse.json`).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from omstream.embedded.accept import describe
from omstream.embedded.control_plane import control_plane_services, wait_for_masters
from omstream.embedded.running import QUERY_ENDPOINT_FILE, announce_broker, announce_query_endpoint
from omstream.embedded.stack import (
    broker_port,
    free_port,
    omstream_service,
    topic_partitions,
)
from omstream.embedded.store import STORE_DIR, DiskWatch, start_durable_broker
from omstream.embedded.supervisor import NotReady, Supervisor, claim_state_dir
from omstream.settings import Settings, SettingsConflict
from stream.kafka import ensure_topics, high_water_marks, read_to_end
from stream.results import decode_results
from stream.sources.taobao import file_window

_ENDPOINT_TIMEOUT_S = 60.0
ACCEPT_FILE = "accept.json"  # the accepted range of the last run on the state directory
_LAST_RECORDS = 50  # of the window rows' topic: the last flushes of every worker

# What a restart of `omstream up` keeps: said at start.
KEEPS = (
    "the broker keeps what it acknowledged on disk (<state>/store), so a restart, even after kill -9, "
    "stores and counts every acknowledged event"
)


def run_up(settings: Settings, say: Callable[[str], None]) -> None:
    """Run the stack until KeyboardInterrupt (Ctrl-C, SIGTERM), saying when its store's disk runs low;
    SIGHUP restarts the control plane, which reads the operators' keys and the policy at start
    (`running.reload_up`)."""
    with claim_state_dir(settings.state_dir, "up", say):
        supervisor = Supervisor(settings.state_dir, "up", say, details={"accept": _accept_settings(settings)})
        signal.signal(signal.SIGHUP, lambda signum, frame: supervisor.ask_reload())
        try:
            _start(supervisor, settings, say)
            supervisor.watch(until=DiskWatch(settings.state_dir / STORE_DIR, say))
        except KeyboardInterrupt:
            say("stopping")
        finally:
            for name in ("broker.json", QUERY_ENDPOINT_FILE):
                (settings.state_dir / name).unlink(missing_ok=True)
            supervisor.stop()


def _start(supervisor: Supervisor, settings: Settings, say: Callable[[str], None]) -> None:
    store, bootstrap = start_durable_broker(supervisor, settings.state_dir, broker_port(settings.broker_port))
    supervisor.details["store"] = store.endpoint  # its S3 API, for a look at what each topic holds
    asyncio.run(ensure_topics(bootstrap, topic_partitions(settings)))
    changed = _accept_range_change(settings, bootstrap)
    # the broker is restarted on the same port when it exits: it is there while `up` runs
    announce_broker(settings.state_dir, bootstrap, os.getpid())
    # With the embedded ClickHouse, the sink (its one owner) answers the readers' queries.
    query = None if settings.clickhouse_dsn else (free_port(), secrets.token_urlsafe(24))
    sink = settings
    if query is not None:
        sink = settings.model_copy(update={"query_port": query[0], "query_password": SecretStr(query[1])})
    supervisor.start(omstream_service(sink, bootstrap, "sink", "sink"))
    supervisor.start(omstream_service(settings, bootstrap, "worker", "worker"))
    store_urls = {"store_url": store.endpoint, "store_master_url": store.master_url}
    retention = settings.model_copy(update=store_urls)
    supervisor.start(omstream_service(retention, bootstrap, "retention", "retention"))
    plane = control_plane_services(settings, bootstrap)
    masters = [supervisor.start(service) for service in plane.masters]
    wait_for_masters(plane, masters)
    supervisor.start(plane.control)
    clickhouse = "ClickHouse at CLICKHOUSE_DSN"
    if query is not None:
        _wait_for_endpoint(supervisor, query[0])
        endpoint = announce_query_endpoint(settings.state_dir, *query)
        clickhouse = f"ClickHouse (read-only HTTP) at 127.0.0.1:{query[0]}, user and password in {endpoint}"
    say(f"accepting events of {_describe_accept(settings)}; {KEEPS}")
    if changed:
        say(changed)
    # last: the banner says the stack is ready, so what a reader of the banner waits for is said before it
    say(
        f"omstream up: Kafka at {bootstrap}; {clickhouse}; IDCs bj and sh with two masters each, operator "
        f"key `demo` in {settings.keys_dir}; services and PIDs in {settings.state_dir / 'up.json'}; "
        "Ctrl-C to stop"
    )


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


def _accept_range_change(settings: Settings, bootstrap: str) -> str | None:
    """What to say when this run accepts another range than the last run on the state directory did;
    SettingsConflict, before any service reads an event, when every event of the new range would be
    behind the windows the state directory already holds (they would all be late for them)."""
    path = settings.state_dir / ACCEPT_FILE
    accept = _accept_settings(settings)
    before = json.loads(path.read_text()) if path.is_file() else accept
    if before == accept:
        path.write_text(json.dumps(accept))
        return None
    reached = asyncio.run(_windows_reached(bootstrap, settings.windows_topic))
    if reached is not None and settings.accept_range.bounds()[1] <= reached - settings.grace_seconds:
        when = datetime.fromtimestamp(reached, ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")
        raise SettingsConflict(
            f"the windows in {settings.state_dir} have reached {when} ({settings.timezone}), after every "
            f"event of {_describe_accept(settings)}, which would all be too late for them: start this "
            "range on another state directory (OMSTREAM_STATE_DIR)"
        )
    path.write_text(json.dumps(accept))
    previous = _describe_accept(type(settings)(**before))
    return (
        f"the accepted range changed (it was {previous}): the events already stored and their windows "
        "stay; events the services read from now on are judged by the new range"
    )


async def _windows_reached(bootstrap: str, topic: str) -> int | None:
    """The latest event time the workers said their windows are written through (on the last records
    of the window rows' topic, which retention never releases); None before any."""
    end = (await high_water_marks(bootstrap, topic, 1))[0]
    reached = None
    async for record in read_to_end(bootstrap, topic, start=max(0, end - _LAST_RECORDS)):
        try:
            through = decode_results(record.value or b"").written_through.values()
        except (ValueError, KeyError, TypeError, AttributeError):  # not a worker's record
            continue
        for event_time in through:
            reached = event_time if reached is None else max(reached, event_time)
    return reached


def _describe_accept(settings: Settings) -> str:
    return describe(settings.accept_range, settings.timezone)


def window_of(path: Path, settings: Settings) -> Settings:
    """The settings, accepting the window of a historical file (for `omstream up --window-of`)."""
    return settings.with_window(file_window(path, settings.timezone))
