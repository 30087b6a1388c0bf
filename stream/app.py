"""The Faust application of a worker or the sink, and how it takes messages."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import faust
from faust.tables import TableManager
from mode import CrashingSupervisor

from stream._heap import fix_mmap_threshold, return_free_memory
from stream.kafka import MAX_MESSAGE_BYTES, SASL_MECHANISM, BrokerAccess, GroupTimings

_RETURN_MEMORY_SECONDS = 2.0  # how often freed heap memory goes back to the system (see stream._heap)


@dataclass(frozen=True)
class FaustConfig:
    app_id: str  # also the consumer group: the workers share one, the sink has its own
    bootstrap: str
    datadir: Path
    timings: GroupTimings
    log_level: str
    fetch_wait_ms: int = 1500  # longest a fetch waits at the broker for records (Faust's own)


@dataclass(frozen=True)
class Takes:
    """An agent takes up to `messages` messages at a time (of the events topic, which arrives in bulk:
    up to `fetches` fetches of a partition), waiting at most `seconds` for them."""

    messages: int
    fetches: int
    seconds: float


class ImmediateTableManager(TableManager):
    """Faust's table manager, without the 1 s pause it takes at start for tables defined late.

    Our apps define no tables, and that pause is a third of a worker's time to its first event.
    """

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def _credentials(access: BrokerAccess) -> faust.SASLCredentials | None:
    if access.protocol == "PLAINTEXT":
        return None
    return faust.SASLCredentials(
        username=access.username,
        password=access.password,
        mechanism=SASL_MECHANISM,
        ssl_context=access.ssl_context(),  # type: ignore[arg-type]  # None is its default, not annotated
    )


def create_app(config: FaustConfig) -> faust.App:
    config.datadir.mkdir(parents=True, exist_ok=True)  # Faust expects it to exist
    access = BrokerAccess.parse(config.bootstrap)
    return faust.App(
        config.app_id,
        broker=f"kafka://{access.hosts}",
        broker_credentials=_credentials(access),
        datadir=str(config.datadir),
        # No tables or repartitioned streams: state lives in ClickHouse, so Faust needs no leader
        # topic, no changelogs and no recovery, each of which costs a rebalance or a wait at start.
        topic_disable_leader=True,
        topic_allow_declare=False,
        web_enabled=False,
        broker_session_timeout=config.timings.session_ms / 1000,
        broker_heartbeat_interval=config.timings.heartbeat_ms / 1000,
        broker_rebalance_timeout=config.timings.rebalance_ms / 1000,
        stream_recovery_delay=0.0,
        TableManager=ImmediateTableManager,
        # An agent that fails ends the process (a supervisor restarts it, and the windows are rebuilt
        # from the checkpoint) instead of being restarted in place with its held messages lost.
        agent_supervisor=CrashingSupervisor,
        # The worker holds acknowledgements while windows are open; waiting for an empty stream on
        # rebalance or stop would then wait forever.
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        consumer_max_fetch_size=8 << 20,
        broker_max_poll_records=5_000,
        stream_buffer_maxsize=65_536,
        producer_linger_ms=5,
        producer_max_request_size=MAX_MESSAGE_BYTES,  # a checkpoint carrying a partition's open windows
    )


def _tune_garbage_collection() -> None:
    """Collect cycles less often: a take holds lists of a quarter of a million events, and each young
    collection would walk them. What is loaded by now lives as long as the process, so full
    collections need not walk it either."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def raw_topic(app: faust.App, name: str, buffered: int | None = None) -> faust.TopicT:
    """A topic of bytes: decoding is ours (msgspec, orjson, pydantic), much faster than Faust's codecs.
    `buffered`: how many fetched messages may wait for its agent (default: the app's buffer size)."""
    return app.topic(name, key_serializer="raw", value_serializer="raw", maxsize=buffered)


def run_faust(app: faust.App, log_level: str) -> None:
    """Run a Faust app (worker or sink) until SIGTERM/SIGINT; Faust handles both and stops cleanly."""
    _tune_garbage_collection()
    fix_mmap_threshold()
    app.timer(_RETURN_MEMORY_SECONDS, name="return_free_memory")(return_free_memory)
    worker = faust.Worker(app, loglevel=log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
