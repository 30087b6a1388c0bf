"""Settling a window's funnel events: the funnel of what follows is the same as with every event kept."""

import random

import numpy as np
import pytest

from stream.events import BUY, CART, FAV, PV
from stream.windows.funnel import funnel_users, settle

CONVERSION = 300
Columns = tuple[np.ndarray, np.ndarray, np.ndarray]


def columns(events: list[tuple[int, int, int]]) -> Columns:
    if not events:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(3))  # type: ignore[return-value]
    return tuple(np.array(column, dtype=np.int64) for column in zip(*events, strict=True))  # type: ignore[return-value]


def joined(*parts: Columns) -> Columns:
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


@pytest.mark.parametrize("seed", range(40))
def test_settling_in_steps_keeps_the_funnel_of_every_event(seed: int) -> None:
    """Events arrive in steps, each no older than the close point it follows (earlier ones would be
    late); the kept events are settled below that close point at every step."""
    rng = random.Random(seed)
    users = rng.randint(2, 12)
    kept = columns([])
    everything: list[tuple[int, int, int]] = []
    close_point = 0
    for _ in range(rng.randint(1, 8)):
        step = [
            (rng.randrange(users), close_point + rng.randrange(0, 900), rng.choice((PV, PV, FAV, CART, BUY)))
            for _ in range(rng.randint(0, 40))
        ]
        everything += step
        kept = joined(kept, columns(step))
        close_point += rng.randrange(0, 600)
        kept = settle(*kept, CONVERSION, before=close_point)
        assert funnel_users(*kept, CONVERSION) == funnel_users(*columns(everything), CONVERSION)
    assert kept[0].size <= len(everything) + 4 * users


def test_a_settled_user_keeps_at_most_four_events() -> None:
    events = [(1, t, PV) for t in range(0, 100, 10)] + [(1, 55, CART), (1, 95, BUY), (1, 96, FAV)]
    users, ts, codes = settle(*columns(events), CONVERSION, before=1_000)
    expected = [(PV, 50), (PV, 90), (CART, 50), (BUY, 50)]
    assert sorted(zip(codes.tolist(), ts.tolist(), strict=True)) == expected
    assert set(users.tolist()) == {1}


def test_a_cart_after_the_close_point_pairs_with_a_settled_pv() -> None:
    settled = settle(*columns([(1, 100, PV), (2, 100, CART)]), CONVERSION, before=200)
    later = columns([(1, 250, CART), (2, 260, PV), (2, 270, BUY)])
    assert funnel_users(*joined(settled, later), CONVERSION) == (2, 1, 0)
