from aiokafka.partitioner import DefaultPartitioner

from stream.kafka import Partitioner


def test_users_go_where_kafka_s_default_partitioner_puts_their_key() -> None:
    partitioner, kafka = Partitioner(6), DefaultPartitioner()
    partitions = list(range(6))
    for user in [*range(500), 2**63 - 1]:
        assert partitioner(user) == kafka(str(user).encode(), partitions, partitions)


def test_a_message_is_checked_against_its_partition_whatever_the_memo_holds() -> None:
    partitioner = Partitioner(6, memo_limit=50)
    users_of_2 = [user for user in range(400) if partitioner(user) == 2]
    assert len(partitioner._memo) <= 50  # emptied when full: memory does not grow with users seen
    assert partitioner.all_to(users_of_2, 2)
    assert partitioner.all_to([], 2)
    assert not partitioner.all_to([*users_of_2, next(u for u in range(400) if partitioner(u) != 2)], 2)
