import asyncio
import random
from pathlib import Path

import faust
import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from stream._murmur import murmur2_partitions
from stream.app import FaustConfig, create_app
from stream.kafka import BrokerAccess, GroupTimings, Partitioner, kafka_options, redacted


def test_users_go_where_kafka_s_default_partitioner_puts_their_key() -> None:
    partitioner, kafka = Partitioner(6), DefaultPartitioner()
    partitions = list(range(6))
    for user in [*range(500), 2**63 - 1]:
        assert partitioner(user) == kafka(str(user).encode(), partitions, partitions)


@pytest.mark.parametrize("partitions", [1, 4, 6, 7])
def test_many_users_hashed_at_once_go_where_kafka_puts_each(partitions: int) -> None:
    rng, kafka, all_partitions = random.Random(partitions), DefaultPartitioner(), list(range(partitions))
    users = [0, 9, 10, 999, 1_000, 2**63 - 1]
    users += [rng.randrange(2 ** rng.randrange(1, 64)) for _ in range(3_000)]
    hashed = murmur2_partitions(np.array(users, dtype=np.int64), partitions).tolist()
    assert hashed == [kafka(str(user).encode(), all_partitions, all_partitions) for user in users]


def test_a_bulk_of_new_users_is_checked_whole() -> None:
    partitioner, other = Partitioner(6), Partitioner(6)
    users = list(range(10**9, 10**9 + 2_000))
    assert not partitioner.all_to(users, 2)
    assert partitioner.all_to([user for user in users if other(user) == 2], 2)


def test_a_message_is_checked_against_its_partition_whatever_the_memo_holds() -> None:
    partitioner = Partitioner(6, memo_limit=50)
    users_of_2 = [user for user in range(400) if partitioner(user) == 2]
    assert len(partitioner._memo) <= 50  # emptied when full: memory does not grow with users seen
    assert partitioner.all_to(users_of_2, 2)
    assert partitioner.all_to([], 2)
    assert not partitioner.all_to([*users_of_2, next(u for u in range(400) if partitioner(u) != 2)], 2)


def test_a_plain_bootstrap_address_connects_without_authentication() -> None:
    assert kafka_options("127.0.0.1:9092,127.0.0.1:9093") == {
        "bootstrap_servers": "127.0.0.1:9092,127.0.0.1:9093"
    }


def test_a_bootstrap_address_may_carry_the_service_s_own_kafka_user() -> None:
    access = BrokerAccess.parse("sasl_plaintext://control:p%40ss%3Aword@kafka:9092,kafka-2:9092")
    assert access == BrokerAccess("kafka:9092,kafka-2:9092", "SASL_PLAINTEXT", "control", "p@ss:word")
    options = access.options()
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-512")
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("control", "p@ss:word")
    assert options["ssl_context"] is None
    assert BrokerAccess.parse("sasl_ssl://sink:x@kafka:9093").options()["ssl_context"] is not None
    assert redacted("sasl_plaintext://control:secret@kafka:9092") == "sasl_plaintext://control:***@kafka:9092"
    assert redacted("kafka:9092") == "kafka:9092"


def test_a_faust_app_authenticates_as_the_address_says(tmp_path: Path) -> None:
    config = FaustConfig(
        "t", "sasl_plaintext://worker:secret@kafka:9092", tmp_path, GroupTimings(2.0), "WARNING"
    )

    async def credentials_of_an_app() -> object:  # a Faust app is made in an event loop
        return create_app(config).conf.broker_credentials

    credentials = asyncio.run(credentials_of_an_app())
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value) == (
        "worker",
        "secret",
        "SCRAM-SHA-512",
    )


@pytest.mark.parametrize(
    "bootstrap",
    ["sasl_plaintext://kafka:9092", "ssl://user:secret@kafka:9092", "sasl_ssl://:secret@kafka:9092"],
)
def test_a_bad_bootstrap_address_is_one_clear_error_without_its_password(bootstrap: str) -> None:
    with pytest.raises(ValueError, match="bad Kafka bootstrap") as error:
        BrokerAccess.parse(bootstrap)
    assert "secret" not in str(error.value)
