"""The ordered per-user funnel pv → cart → buy within a conversion window, computed exactly.

A user reaches step 2 with a cart at most `conversion` seconds after one of their pv (at or before
it), and step 3 with a buy that follows such a cart within `conversion` seconds of the chain's pv.
Events of one second count in funnel order (pv, then cart, then buy), whatever order they arrived in.

An open window's events before its close point can never be joined by earlier ones (those would be
late), so `settle` replaces them with at most four per user that lead to the same result, whatever
comes after: the window keeps its users, not every event of its day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.events import BUY, CART, FAV, PV
from stream.windows.buckets import Bools, Int64s

_NONE = -1
_SEGMENT = np.int64(1) << 34  # larger than any Unix time we accept, so per-user maxima never mix


def _running_max_per_user(values: Int64s, segment: Int64s) -> Int64s:
    shifted = values + segment * _SEGMENT
    return np.maximum.accumulate(shifted) - segment * _SEGMENT


@dataclass(frozen=True)
class _Chains:
    """A window's pv/cart/buy events in (user, time, step) order, with what each row reaches."""

    users: Int64s
    ts: Int64s
    codes: Int64s
    last_pv: Int64s  # the latest pv at or before the row (_NONE: none yet)
    cart_ok: Bools  # a cart within the conversion of a pv before it
    best_start: Int64s  # the latest pv that started a pv→cart pair at or before the row
    buy_ok: Bools  # a buy within the conversion of such a chain's pv


def _chains(users: Int64s, ts: Int64s, codes: Int64s, conversion: int) -> _Chains:
    relevant = codes != FAV
    users, ts, codes = users[relevant], ts[relevant], codes[relevant]
    order = np.lexsort((codes, ts, users))
    users, ts, codes = users[order], ts[order], codes[order]
    segment = np.concatenate(([0], np.cumsum(users[1:] != users[:-1]))).astype(np.int64)
    # chain start of a pv→cart pair: the latest pv at or before the cart (the latest leaves most room)
    last_pv = _running_max_per_user(np.where(codes == PV, ts, _NONE), segment)
    cart_ok = (codes == CART) & (last_pv != _NONE) & (ts - last_pv <= conversion)
    best_start = _running_max_per_user(np.where(cart_ok, last_pv, _NONE), segment)
    buy_ok = (codes == BUY) & (best_start != _NONE) & (ts - best_start <= conversion)
    return _Chains(users, ts, codes, last_pv, cart_ok, best_start, buy_ok)


def funnel_users(users: Int64s, ts: Int64s, codes: Int64s, conversion: int) -> tuple[int, int, int]:
    """(users with a pv, users reaching cart after pv, users reaching buy after cart after pv)."""
    chains = _chains(users, ts, codes, conversion)
    if chains.users.size == 0:
        return 0, 0, 0
    return (
        int(np.unique(chains.users[chains.codes == PV]).size),
        int(np.unique(chains.users[chains.cart_ok]).size),
        int(np.unique(chains.users[chains.buy_ok]).size),
    )


def settle(
    users: Int64s, ts: Int64s, codes: Int64s, conversion: int, before: int
) -> tuple[Int64s, Int64s, Int64s]:
    """The events with every event before `before` replaced by its user's summary: a pv at their
    latest pv, and, if they started a pv→cart chain, a pv and a cart at the latest chain start (and
    a buy there if a buy followed a chain). With only events at or after `before` added, the funnel
    of the result equals that of all the events: a later cart pairs with the latest pv before it, a
    later buy with the latest chain start, and the users already reached stay reached."""
    old = ts < before
    if not old.any():
        return users, ts, codes
    chains = _chains(users[old], ts[old], codes[old], conversion)
    if chains.users.size == 0:  # only favs: the funnel never reads them
        return users[~old], ts[~old], codes[~old]
    last_row = np.flatnonzero(np.append(chains.users[1:] != chains.users[:-1], True))
    user, last_pv, best = chains.users[last_row], chains.last_pv[last_row], chains.best_start[last_row]
    bought = np.isin(user, chains.users[chains.buy_ok])
    has_pv, chained = last_pv != _NONE, best != _NONE
    summary = (
        (user[has_pv], last_pv[has_pv], PV),
        (user[chained], best[chained], PV),
        (user[chained], best[chained], CART),
        (user[bought], best[bought], BUY),
    )
    return (
        np.concatenate([users[~old], *(part[0] for part in summary)]),
        np.concatenate([ts[~old], *(part[1] for part in summary)]),
        np.concatenate([codes[~old], *(np.full(part[0].size, part[2], dtype=np.int64) for part in summary)]),
    )
