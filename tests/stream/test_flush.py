"""How often a worker writes its open windows: every flush interval, unless that costs too much."""

import pytest

from stream.worker import FULL_FLUSH_SHARE, full_flush_interval


def test_cheap_flushes_keep_the_configured_interval() -> None:
    assert full_flush_interval(2.0, last_cost=0.05) == 2.0


@pytest.mark.parametrize("cost", [0.5, 3.0])
def test_a_costly_flush_stretches_the_interval_to_its_share_of_the_time(cost: float) -> None:
    # a dense day's funnel far behind the stream: rewriting it every 2 s would be most of the work
    interval = full_flush_interval(2.0, last_cost=cost)
    assert interval == pytest.approx(cost / FULL_FLUSH_SHARE)
    assert cost / interval <= FULL_FLUSH_SHARE
