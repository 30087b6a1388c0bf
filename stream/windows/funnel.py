"""The ordered per-user funnel pv → cart → buy within a conversion window, computed exactly.

A user reaches step 2 with a cart at most `conversion` seconds after one of their pv (at or before
it), and step 3 with a buy that follows such a cart within `conversion` seconds of the chain's pv.
Events of one second count in funnel order (pv, then cart, then buy), whatever order they arrived in.
"""

from __future__ import annotations

import numpy as np

from stream.events import BUY, CART, FAV, PV
from stream.windows.buckets import Int64s

_NONE = -1
_SEGMENT = np.int64(1) << 34  # larger than any Unix time we accept, so per-user maxima never mix


def _running_max_per_user(values: Int64s, segment: Int64s) -> Int64s:
    shifted = values + segment * _SEGMENT
    return np.maximum.accumulate(shifted) - segment * _SEGMENT


def funnel_users(users: Int64s, ts: Int64s, codes: Int64s, conversion: int) -> tuple[int, int, int]:
    """(users with a pv, users reaching cart after pv, users reaching buy after cart after pv)."""
    relevant = codes != FAV
    users, ts, codes = users[relevant], ts[relevant], codes[relevant]
    if users.size == 0:
        return 0, 0, 0
    order = np.lexsort((codes, ts, users))
    users, ts, codes = users[order], ts[order], codes[order]
    segment = np.concatenate(([0], np.cumsum(users[1:] != users[:-1]))).astype(np.int64)
    # chain start of a pv→cart pair: the latest pv at or before the cart (the latest leaves most room)
    last_pv = _running_max_per_user(np.where(codes == PV, ts, _NONE), segment)
    cart_ok = (codes == CART) & (last_pv != _NONE) & (ts - last_pv <= conversion)
    best_start = _running_max_per_user(np.where(cart_ok, last_pv, _NONE), segment)
    buy_ok = (codes == BUY) & (best_start != _NONE) & (ts - best_start <= conversion)
    return (
        int(np.unique(users[codes == PV]).size),
        int(np.unique(users[cart_ok]).size),
        int(np.unique(users[buy_ok]).size),
    )
