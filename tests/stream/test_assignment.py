"""Which fetched messages a worker may window: only those of partitions it holds now, fetched in the
generation that assigned them (a take can still hold older ones after a rebalance)."""

from faust.types import TP, Message

from stream.worker import Assignment


def message(partition: int, generation: int) -> Message:
    return Message(
        topic="events",
        partition=partition,
        offset=0,
        timestamp=0.0,
        timestamp_type=0,
        headers=None,
        key=None,
        value=b"{}",
        checksum=None,
        tp=TP("events", partition),
        generation_id=generation,
    )


def test_messages_of_the_assigning_generation_and_held_partitions_are_windowed() -> None:
    assignment = Assignment(frozenset({0, 1}), generation=3)
    assert assignment.admits(message(0, 3))
    assert not assignment.admits(message(2, 3))  # another member's partition
    assert not assignment.admits(message(0, 2))  # fetched before this assignment


def test_after_a_revocation_a_take_fetched_before_it_is_skipped_even_in_the_same_generation() -> None:
    # the group's next generation is not known until the new assignment arrives
    assignment = Assignment(frozenset({0, 1}), generation=3).without({0, 1})
    assert not assignment.admits(message(0, 3))
    assert not assignment.admits(message(1, 3))


def test_nothing_is_windowed_before_the_first_assignment() -> None:
    assert not Assignment().admits(message(0, 0))
