"""Kafka connections shared by the emitter, the worker and the CLI: reachability, topics, partitioning."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import numpy as np
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from stream import _fetch
from stream._murmur import murmur2_partitions

_fetch.install()  # every consumer of the process skips past record batches it cannot decode


@dataclass(frozen=True)
class GroupTimings:
    """A consumer group member's timings, all derived from its session timeout.

    Tansu answers a JoinGroup only after half the session timeout, so a short session makes the
    first assignment (and the recovery from a killed member) take seconds, not half a minute.
    """

    session_s: float

    @property
    def session_ms(self) -> int:
        return int(self.session_s * 1000)

    @property
    def heartbeat_ms(self) -> int:
        return max(100, self.session_ms // 4)

    @property
    def rebalance_ms(self) -> int:
        return self.session_ms * 2


class BrokerUnreachable(RuntimeError):
    """No Kafka broker answers at the configured bootstrap address."""


class BadBootstrap(ValueError):
    """A bootstrap address that is neither host:port nor a SASL URL with a user."""


SASL_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class BrokerAccess:
    """Where the brokers are and who connects, read from a bootstrap address: `host:port[,host:port]`
    (plaintext, as the embedded broker), or `sasl_plaintext://user:password@host:port[,...]` and
    `sasl_ssl://...[?cafile=PATH]` (SASL SCRAM-SHA-512, the second over TLS), with which each service
    of a production deployment authenticates as itself, like CLICKHOUSE_DSN carries its user."""

    hosts: str
    protocol: str = "PLAINTEXT"
    username: str = ""
    password: str = ""
    cafile: str = ""

    @classmethod
    def parse(cls, bootstrap: str) -> BrokerAccess:
        scheme, separator, rest = bootstrap.partition("://")
        if not separator:
            return cls(hosts=bootstrap)
        protocol = scheme.upper()
        credentials, at, address = rest.rpartition("@")
        username, _, password = credentials.partition(":")
        if protocol not in ("SASL_PLAINTEXT", "SASL_SSL") or not at or not username:
            raise BadBootstrap(
                f"bad Kafka bootstrap {redacted(bootstrap)!r}: expected host:port, "
                "sasl_plaintext://user:password@host:port or sasl_ssl://user:password@host:port"
            )
        hosts, _, query = address.partition("?")
        cafile = parse_qs(query).get("cafile", [""])[0]
        return cls(hosts, protocol, unquote(username), unquote(password), cafile)

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.cafile or None) if self.protocol == "SASL_SSL" else None

    def options(self) -> dict[str, Any]:
        """Keyword arguments of every aiokafka client."""
        if self.protocol == "PLAINTEXT":
            return {"bootstrap_servers": self.hosts}
        return {
            "bootstrap_servers": self.hosts,
            "security_protocol": self.protocol,
            "sasl_mechanism": SASL_MECHANISM,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
            "ssl_context": self.ssl_context(),
        }


def kafka_options(bootstrap: str) -> dict[str, Any]:
    return BrokerAccess.parse(bootstrap).options()


def redacted(bootstrap: str) -> str:
    """The bootstrap address without its password, for messages and logs."""
    scheme, separator, rest = bootstrap.partition("://")
    credentials, at, address = rest.rpartition("@")
    if not separator or not at:
        return bootstrap
    return f"{scheme}://{credentials.partition(':')[0]}:***@{address}"


def _first_address(bootstrap: str) -> tuple[str, int]:
    host, _, port = BrokerAccess.parse(bootstrap).hosts.split(",")[0].strip().rpartition(":")
    return host or "localhost", int(port)


def broker_accepts(bootstrap: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(_first_address(bootstrap), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def require_broker(bootstrap: str) -> None:
    if not broker_accepts(bootstrap, timeout=3.0):
        raise BrokerUnreachable(f"Kafka broker unreachable at {redacted(bootstrap)}")


# Every topic is created with its retention stated: clients such as Quix Streams read it back, and
# Tansu reports only what was set.
# the largest message: a checkpoint that carries a partition's open windows (`stream.windows.snapshot`)
MAX_MESSAGE_BYTES = 64 << 20
TOPIC_CONFIGS = {"retention.ms": "-1", "max.message.bytes": str(MAX_MESSAGE_BYTES)}


async def ensure_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    """Create the topics that do not exist yet (existing ones are left as they are)."""
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=count, replication_factor=1, topic_configs=TOPIC_CONFIGS)
            for name, count in partitions.items()
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
            await _wait_for_topics(admin, [topic.name for topic in missing])
    finally:
        await admin.close()


async def _wait_for_topics(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    for _ in range(50):
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)
    raise BrokerUnreachable(f"topics {names} were not created")


class Partitioner:
    """Kafka's default key partitioning (murmur2 of the key), memoised per user.

    The memo is emptied when it reaches `memo_limit` users, so a long-running worker's memory does not
    grow with the number of users it has ever seen.
    """

    def __init__(self, partitions: int, memo_limit: int = 1 << 20) -> None:
        self.partitions = partitions
        self.memo_limit = memo_limit
        self._memo: dict[int, int] = {}

    def __call__(self, user_id: int) -> int:
        partition = self._memo.get(user_id)
        if partition is None:
            partition = (murmur2(str(user_id).encode()) & 0x7FFFFFFF) % self.partitions
            if len(self._memo) >= self.memo_limit:
                self._memo.clear()
            self._memo[user_id] = partition
        return partition

    def all_to(self, user_ids: Sequence[int], partition: int) -> bool:
        """Whether every user hashes to `partition` (the hot path: one call per bulk of messages or
        per message of many events, not per user). Users the memo misses, as in a stream of many
        users, are hashed all at once."""
        partitions = set(map(self._memo.get, user_ids))  # C-level loops
        if None in partitions:
            computed = murmur2_partitions(np.asarray(user_ids, dtype=np.int64), self.partitions).tolist()
            if len(self._memo) + len(computed) > self.memo_limit:
                self._memo.clear()
            self._memo.update(zip(user_ids, computed, strict=True))
            partitions = set(computed)
        return partitions <= {partition}


# Where a partition ends comes from a fetch's high-water mark, never from ListOffsets (`end_offsets`):
# Tansu answers ListOffsets low when a partition's last record batch holds several records.


async def high_water_marks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The offset after the last message of each partition (0 for an empty one)."""
    consumer = AIOKafkaConsumer(**kafka_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, partition) for partition in range(partitions)]
        consumer.assign(assigned)
        for partition in assigned:
            consumer.seek(partition, 0)
        await consumer.getmany(*assigned, timeout_ms=500)
        return {tp.partition: consumer.highwater(tp) or 0 for tp in assigned}
    finally:
        await consumer.stop()


async def read_every_partition(
    bootstrap: str, topic: str, timeout: float = 60.0
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of every partition of `topic` (each partition in offset order), until the reader
    has reached the high-water mark a fetch of each partition reported; nothing if the topic does not
    exist. A topic a broker created with its defaults on a first produce (Tansu: 4 partitions) spreads
    keyed records over all its partitions. A partition no fetch has answered for yet is not taken for
    empty: the read waits for its answer, up to `timeout` seconds."""
    consumer = AIOKafkaConsumer(
        **kafka_options(bootstrap),
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        fetch_max_bytes=MAX_MESSAGE_BYTES,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, so that its partitions are known
        partitions = [TopicPartition(topic, number) for number in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        unread = set(partitions)
        while unread:
            for records in (await consumer.getmany(*unread, timeout_ms=300)).values():
                for record in records:
                    yield record
            for partition in list(unread):
                end = consumer.highwater(partition)
                if end is not None and await consumer.position(partition) >= end:
                    unread.discard(partition)
            if unread and time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: no end of partitions {sorted(p.partition for p in unread)}")
    finally:
        await consumer.stop()


async def read_to_end(
    bootstrap: str, topic: str, start: int = 0
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of a one-partition topic from offset `start` until the reader reaches the
    high-water mark of its latest fetch. Each call reads with a consumer of its own: a long-lived
    consumer's buffered fetch would give a high-water mark from before the call."""
    consumer = AIOKafkaConsumer(
        **kafka_options(bootstrap),
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        fetch_max_bytes=MAX_MESSAGE_BYTES,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, start)
        while True:
            for record in (await consumer.getmany(partition, timeout_ms=300)).get(partition, []):
                yield record
            mark = consumer.highwater(partition)  # None until a fetch has answered: not the end yet
            if mark is not None and await consumer.position(partition) >= mark:
                return
    finally:
        await consumer.stop()
