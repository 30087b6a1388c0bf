"""Synthetic Taobao UserBehavior data: the real file's CSV format and statistical shape, at any size.

The real 100M-row file cannot be downloaded here, so tests, demos and benchmarks use this instead. Output is
`user_id,item_id,category_id,behavior,timestamp` without a header, sorted by user (each user's rows in time
order), like the real file. It reproduces the published behaviour mix, the China-time hourly curve (night
low, 21 h peak), the Dec 2 spike, early-heavy cohorts with ~75 % day-1 retention, ~2.9 buys per buyer
spread over days, Zipf-like category sales, a fixed item -> category map, and pv -> cart -> buy funnels.

Same (events, seed) -> byte-identical output. Users are generated in blocks of about `CHUNK_EVENTS` events,
each from its own seeded stream, so memory does not grow with the number of events.
"""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream.events import BEHAVIORS, BUY, CART, FAV, PV
from stream.sources.taobao import TAOBAO_DAYS, TAOBAO_END, TAOBAO_START

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
CodeArray = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

# Published figures of the full data set; every size here scales from them.
TAOBAO_EVENTS = 100_150_807
TAOBAO_USERS = 987_994
TAOBAO_ITEMS = 4_162_024
TAOBAO_CATEGORIES = 9_439
_ITEM_ID_SPACE = 5_163_070  # real ids are sparse in [1, ~5.16M]; drawing from that range keeps their look
_CATEGORY_ID_SPACE = 5_162_429

MAX_EVENTS = 10**11  # keeps every id and timestamp within the 10 digits the fast formatter writes
CHUNK_EVENTS = 200_000
# Cap on a user's lognormal activity (median 1): no user gets more than ~3,500 events, so a chunk, which
# ends with the user crossing a CHUNK_EVENTS boundary, never exceeds it by more than that.
_MAX_ACTIVITY = 50.0

_SHARE = {FAV: 0.0288, CART: 0.0552, BUY: 0.0201}  # pv takes the rest (0.8958 published)
# A user's expected count of each action is share-normalised Gamma(shape) * events**exponent, and zero for
# a share of users. For buys: pure window-shoppers, regular buyers otherwise, and light users buy nearly as
# often as heavy ones. Together that gives Taobao's ~69 % buyers at ~2.9 buys each, two thirds of them
# buying on two days or more; plain per-event chances would make nearly everyone buy about twice.
_PROPENSITY_SHAPE = {FAV: 0.8, CART: 1.2, BUY: 5.0}
_PROPENSITY_CAP = 10.0  # keeps the rare extreme draw from turning a user into a pure buyer
_ACTIVITY_EXPONENT = {FAV: 1.0, CART: 1.0, BUY: 0.45}
_NEVER_SHARE = {FAV: 0.0, CART: 0.0, BUY: 0.15}

# Hourly session starts, China time: night low at 4-5 h, evening peak at 21 h (Taobao's shape).
_HOUR_WEIGHT = np.array(
    [3.6, 1.9, 1.1, 0.75, 0.6, 0.65, 1.2, 2.1, 2.9, 3.6, 4.2, 4.3,
     4.3, 4.5, 4.5, 4.5, 4.4, 4.1, 4.3, 5.3, 6.3, 7.5, 6.6, 5.0]
)  # fmt: skip
_HOUR_CDF = np.cumsum(_HOUR_WEIGHT) / _HOUR_WEIGHT.sum()
# Per day from Sat 2017-11-25: chance a user shows up, and how much a present user does. Mon-Thu sit ~7 %
# below Fri-Sun: two clear levels keep the daily PV's median absolute deviation steady, so a 3-MAD rule
# flags the Dec 2 spike (~+33 %) and nothing else at any seed; with nine near-equal days the MAD would be
# mostly noise and flag weekdays at random.
_DAY_PRESENCE = np.array([1.0, 1.0, 0.98, 0.98, 0.98, 0.98, 1.0, 1.12, 1.0])
_DAY_INTENSITY = np.array([1.0, 1.0, 0.95, 0.95, 0.95, 0.95, 1.0, 1.215, 1.02])
_PRESENCE_BETA = (1.8, 0.9)  # a user's daily presence; its spread sets day-1 retention (~75 %)
_ORDER_JITTER = 0.5  # log-activity noise that reshuffles neighbours between days in _systematic_draw
_REGULAR_EVENTS = 300.0  # users with many more events than this are present almost every day

_SESSION_EVENTS = 4.5  # mean events per session
_GAP_SECONDS = 80.0  # mean time between events of a session
_ACTION_LOOKBACK = 0.4  # fav/cart/buy act on an item seen a geometric(p) number of events before
_REVISIT_SHARE = 0.12  # pv of an item the user has seen before
_REVISIT_LOOKBACK = 0.05

_CATEGORY_HEAD = 0.12  # popularity ~ rank^-s, s chosen so that this share of categories has 80 % of it
_CATEGORY_SCALE = 0.45  # categories grow as events^0.45: ~420 at 100k events, 9,439 at the full size
_USER_CATEGORIES = 1.0  # each user browses 1 + Poisson(this + events / _EVENTS_PER_CATEGORY) categories
_EVENTS_PER_CATEGORY = 25.0
_CATEGORY_FOCUS = 2.0  # exponent on u in picks like floor(k * u**e): most picks go to the first few
_ITEM_FOCUS = 2.0

_LANE = 1 << 24  # per-user offset in keys: more than the spread of time offsets and positions in a chunk
_STREAM_WORLD, _STREAM_CHUNK, _STREAM_DIRTY = range(3)
_GZIP_LEVEL = 1  # much faster than level 6 for a slightly bigger file: generating is about throughput


@dataclass(frozen=True)
class GenerateSummary:
    rows: int  # lines written (including dirty rows)
    events: int  # clean events among them
    users: int
    dirty: int  # dirty lines written
    seconds: float


@dataclass(frozen=True, eq=False)
class EventChunk:
    """Events of a block of users, sorted by user then time; `behavior` holds indices into BEHAVIORS."""

    user_id: IntArray
    item_id: IntArray
    category_id: IntArray
    behavior: CodeArray
    ts: IntArray

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True, eq=False)
class _World:
    """What all chunks share: users and their event counts, categories, and the item catalogue."""

    user_ids: IntArray
    user_events: IntArray
    chunk_bounds: IntArray  # chunk k holds users chunk_bounds[k]:chunk_bounds[k + 1]
    category_cdf: FloatArray  # over category ranks, most popular first
    category_ids: IntArray
    category_first_item: IntArray  # items of a category are a contiguous run of the catalogue
    category_items: IntArray
    item_ids: IntArray


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def _scaled(events: int, published: int) -> int:
    return max(1, round(events * published / TAOBAO_EVENTS))


def _distinct_ids(rng: np.random.Generator, count: int, space: int) -> IntArray:
    """`count` distinct random ids in [1, max(space, count)]."""
    return rng.choice(max(space, count), size=count, replace=False).astype(np.int64) + 1


def _build_world(events: int, seed: int) -> _World:
    rng = _rng(seed, _STREAM_WORLD)
    user_events = _user_events(rng, events, _scaled(events, TAOBAO_USERS))
    items = _scaled(events, TAOBAO_ITEMS)
    categories = min(items, max(1, round(TAOBAO_CATEGORIES * (events / TAOBAO_EVENTS) ** _CATEGORY_SCALE)))
    popularity = 1.0 / np.arange(1, categories + 1) ** _zipf_exponent(categories)
    # Catalogue size follows popularity, so items of big and small categories get seen alike.
    category_items = 1 + rng.multinomial(items - categories, popularity / popularity.sum())
    users = len(user_events)
    return _World(
        user_ids=np.sort(_distinct_ids(rng, users, users + users // 30)),  # nearly dense, as in the real file
        user_events=user_events,
        chunk_bounds=_chunk_bounds(user_events),
        category_cdf=np.cumsum(popularity) / popularity.sum(),
        category_ids=_distinct_ids(rng, categories, _CATEGORY_ID_SPACE),
        category_first_item=np.cumsum(category_items) - category_items,
        category_items=category_items,
        item_ids=_distinct_ids(rng, items, _ITEM_ID_SPACE),
    )


def _zipf_exponent(categories: int) -> float:
    """The s under which the top _CATEGORY_HEAD of `categories` ranks carry 80 % of rank^-s, by bisection.

    A fixed s would let the Pareto cut drift with the category count (30 % of a few hundred categories, 14 %
    of 9,439 for s = 1); solving per count keeps it near Taobao's shape at every output size.
    """
    ranks = np.arange(1, categories + 1)
    head = max(1, round(categories * _CATEGORY_HEAD))
    low, high = 0.0, 4.0
    for _ in range(40):
        middle = (low + high) / 2
        weight = ranks**-middle
        low, high = (middle, high) if weight[:head].sum() < 0.8 * weight.sum() else (low, middle)
    return high


def _user_events(rng: np.random.Generator, events: int, users: int) -> IntArray:
    """Events per user, heavy-tailed, at least one each, summing to exactly `events`."""
    activity = np.minimum(rng.lognormal(0.0, 0.9, users), _MAX_ACTIVITY)
    counts: IntArray = 1 + rng.multinomial(events - users, activity / activity.sum())
    return counts


def _chunk_bounds(user_events: IntArray) -> IntArray:
    block_of_last_event = (np.cumsum(user_events) - 1) // CHUNK_EVENTS
    crossings = np.flatnonzero(np.diff(block_of_last_event) > 0) + 1
    return np.concatenate(([0], crossings, [len(user_events)])).astype(np.int64)


def generate_chunks(events: int, seed: int = 0) -> Iterator[EventChunk]:
    """Exactly `events` clean events of ~events/101 users, in blocks of whole users, ~CHUNK_EVENTS each."""
    if not 0 <= events <= MAX_EVENTS:
        raise ValueError(f"events must be between 0 and {MAX_EVENTS}, got {events}")
    if events == 0:
        return
    world = _build_world(events, seed)
    for index in range(len(world.chunk_bounds) - 1):
        yield _chunk(world, index, _rng(seed, _STREAM_CHUNK, index))


def _chunk(world: _World, index: int, rng: np.random.Generator) -> EventChunk:
    users = slice(world.chunk_bounds[index], world.chunk_bounds[index + 1])
    user_events = world.user_events[users]
    user, ts = _timeline(rng, _events_per_day(rng, user_events))
    order = np.argsort(user * _LANE + (ts - TAOBAO_START), kind="stable")
    user, ts = user[order], _one_per_second(user[order], ts[order])
    behavior = _behaviors(rng, user_events, user)
    item, category = _items(rng, world, user_events, user, behavior)
    user_id = world.user_ids[users][user]
    return EventChunk(user_id, world.item_ids[item], world.category_ids[category], behavior, ts)


def _events_per_day(rng: np.random.Generator, user_events: IntArray) -> IntArray:
    """(users, days) event counts: each user is present on some days and spreads their events over them."""
    users = len(user_events)
    # Heavy users come nearly every day, as on the real site; it also keeps daily totals from hinging on
    # whether a handful of heavy users happened to show up.
    absence = (1.0 - rng.beta(*_PRESENCE_BETA, users)) * np.exp(-user_events / _REGULAR_EVENTS)
    present = _systematic_draw(rng, (1.0 - absence)[:, None] * _DAY_PRESENCE, user_events)
    absent = np.flatnonzero(~present.any(axis=1))
    present[absent, rng.choice(TAOBAO_DAYS, len(absent), p=_DAY_PRESENCE / _DAY_PRESENCE.sum())] = True
    weights = present * _DAY_INTENSITY
    counts: IntArray = rng.multinomial(user_events, weights / weights.sum(axis=1, keepdims=True))
    return counts


def _systematic_draw(rng: np.random.Generator, chance: FloatArray, user_events: IntArray) -> BoolArray:
    """Who is present each day, each user with their own chance, drawn systematically within a day.

    Independent coin flips would let a few heavy users' luck swing a day's PV by several percent, enough to
    fake or mask the single Dec 2 anomaly in outputs of a few hundred thousand events. So each day walks the
    users in order of activity with one random offset: similar users balance each other out. The order is
    jittered afresh each day, so a user's days stay (nearly) independent of each other.
    """
    chance = np.minimum(chance, 1.0)
    jitter = rng.normal(0.0, _ORDER_JITTER, chance.shape)
    order = np.argsort(np.log(user_events)[:, None] + jitter, axis=0, kind="stable")
    ordered = np.take_along_axis(chance, order, axis=0)
    reach = np.cumsum(ordered, axis=0) + rng.random(chance.shape[1])
    present = np.empty(chance.shape, dtype=bool)
    np.put_along_axis(present, order, np.floor(reach) > np.floor(reach - ordered), axis=0)
    return present


def _timeline(rng: np.random.Generator, per_day: IntArray) -> tuple[IntArray, IntArray]:
    """(local user, ts) of every event: each user-day is cut into sessions of events a minute or two apart."""
    sizes = per_day.ravel()
    group = np.repeat(np.arange(len(sizes)), sizes)
    user, day = np.divmod(group, TAOBAO_DAYS)
    starts_session = rng.random(len(group)) < 1.0 / _SESSION_EVENTS
    starts_session[(np.cumsum(sizes) - sizes)[sizes > 0]] = True
    session = np.cumsum(starts_session) - 1
    elapsed = np.cumsum(np.where(starts_session, 0.0, rng.exponential(_GAP_SECONDS, len(group))))
    in_session = elapsed - elapsed[np.flatnonzero(starts_session)][session]
    second_of_day = _session_starts(rng, int(session[-1]) + 1)[session] + in_session.astype(np.int64)
    return user, TAOBAO_START + day * 86_400 + second_of_day


def _one_per_second(user: IntArray, ts: IntArray) -> IntArray:
    """Gives each event of a user its own second, inside the window (the input is sorted by user, then ts).

    Exact duplicate lines are a kind of dirt, so clean lines must never repeat; distinct times per user make
    that certain. Ties move forward a second or so, then a pile-up at the window's end moves back.
    """
    position = np.arange(len(ts))
    lane = user * _LANE  # keeps one user's running max / min from reaching into the next user's events
    shifted = lane + (ts - TAOBAO_START) - position
    forward = np.minimum(np.maximum.accumulate(shifted) - lane + position, TAOBAO_END - 1 - TAOBAO_START)
    backward = np.minimum.accumulate((lane + forward - position)[::-1])[::-1] - lane + position
    return TAOBAO_START + backward


def _session_starts(rng: np.random.Generator, sessions: int) -> IntArray:
    """Second of the day each session starts, China time.

    Hours are drawn stratified (one uniform per 1/sessions slice of the CDF) so every block follows the hourly
    curve closely, and the 21 h peak does not depend on sampling luck in small outputs.
    """
    quantiles = (rng.permutation(sessions) + rng.random(sessions)) / sessions
    hour = np.searchsorted(_HOUR_CDF, quantiles, side="right")
    starts: IntArray = hour * 3600 + rng.integers(0, 3600, sessions)
    return starts


def _behaviors(rng: np.random.Generator, user_events: IntArray, user: IntArray) -> CodeArray:
    """Behaviour code per event, with per-user chances of fav, cart and buy (pv otherwise)."""
    draw = rng.random(len(user))
    behavior = np.full(len(user), PV, dtype=np.uint8)
    floor = np.zeros(len(user))
    for code, share in _SHARE.items():
        shape = _PROPENSITY_SHAPE[code]
        propensity = np.minimum(rng.gamma(shape, 1.0 / shape, len(user_events)), _PROPENSITY_CAP)
        propensity[rng.random(len(user_events)) < _NEVER_SHARE[code]] = 0.0
        expected = propensity * user_events ** _ACTIVITY_EXPONENT[code]
        # Normalised per block so the mix holds to the published shares even in small outputs.
        weight = expected / expected.sum() if expected.any() else expected
        rate = share * weight * user_events.sum() / user_events
        ceiling = floor + rate[user]
        behavior[(draw >= floor) & (draw < ceiling)] = code
        floor = ceiling
    return behavior


def _items(
    rng: np.random.Generator, world: _World, user_events: IntArray, user: IntArray, behavior: CodeArray
) -> tuple[IntArray, IntArray]:
    """(item index, category index) per event: fresh views from the user's favourite categories, and
    fav/cart/buy (and re-views) of an item the same user viewed shortly before."""
    tastes = 1 + rng.poisson(_USER_CATEGORIES + user_events / _EVENTS_PER_CATEGORY)
    first_taste = np.cumsum(tastes) - tastes
    taste = np.searchsorted(world.category_cdf, rng.random(int(tastes.sum())), side="right")
    pick = (tastes[user] * rng.random(len(user)) ** _CATEGORY_FOCUS).astype(np.int64)
    category = taste[first_taste[user] + pick]
    rank = (world.category_items[category] * rng.random(len(user)) ** _ITEM_FOCUS).astype(np.int64)
    item = world.category_first_item[category] + rank
    origin = _origins(rng, user, behavior)
    return item[origin], category[origin]


def _origins(rng: np.random.Generator, user: IntArray, behavior: CodeArray) -> IntArray:
    """For each event, the earlier event of the same user whose fresh item it repeats (itself if none)."""
    position = np.arange(len(user))
    first_of_user = np.searchsorted(user, user)
    acts = behavior != PV
    repeats = acts | (rng.random(len(user)) < _REVISIT_SHARE)
    lookback = np.where(
        acts, rng.geometric(_ACTION_LOOKBACK, len(user)), rng.geometric(_REVISIT_LOOKBACK, len(user))
    )
    origin = np.where(repeats, np.maximum(position - lookback, first_of_user), position)
    # A repeat may point at another repeat; pointer jumping reaches the fresh event in log(chain) steps.
    while True:
        further = origin[origin]
        if np.array_equal(further, origin):
            return origin
        origin = further


def generate_csv(
    out: Path,
    events: int,
    seed: int = 0,
    dirty: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> GenerateSummary:
    """Write a Taobao-shaped CSV (gzip if `out` ends in .gz); `on_progress` gets the rows written so far.

    With `dirty`, ~0.5 % extra lines like the real file's: duplicates, out-of-window timestamps, garbage, an
    unknown behaviour, an empty field. The clean lines are the same as without `dirty`.
    """
    began = time.perf_counter()
    rows = users = dirt = 0
    with _sink(out) as sink:
        for index, chunk in enumerate(generate_chunks(events, seed)):
            layout = _layout(chunk)
            text, added = _text(layout), 0
            if dirty:
                text, added = _soil(text, layout, chunk, _rng(seed, _STREAM_DIRTY, index))
            sink.write(text)
            rows += len(chunk) + added
            dirt += added
            users += len(np.unique(chunk.user_id))
            if on_progress is not None:
                on_progress(rows)
    return GenerateSummary(rows, rows - dirt, users, dirt, time.perf_counter() - began)


@contextmanager
def _sink(out: Path) -> Iterator[io.BufferedIOBase]:
    """Write to `out` via a temporary sibling, so an interrupted run never leaves a plausible-looking file."""
    partial = out.with_name(out.name + ".part")
    try:
        with partial.open("wb") as raw:
            if out.suffix == ".gz":
                # No name and mtime 0 in the gzip header: the same data always gives the same bytes.
                with gzip.GzipFile("", "wb", _GZIP_LEVEL, raw, mtime=0) as packed:
                    yield packed
            else:
                yield raw
        partial.replace(out)
    except BaseException:  # `out` a directory, say: nothing is left behind
        partial.unlink(missing_ok=True)
        raise


_PADDED = ((np.arange(100_000)[:, None] // 10 ** np.arange(4, -1, -1)) % 10 + ord("0")).astype(np.uint8)
# The same five digits with leading zeros as NUL (0 is all NUL); NULs are dropped from the text at the end.
_UNPADDED = np.where(np.cumsum(_PADDED - ord("0"), axis=1) > 0, _PADDED, 0).astype(np.uint8)
_LOW_HALF = np.concatenate((_UNPADDED, _PADDED))  # low five digits: unpadded unless there are high ones
_BEHAVIOR_BYTES = np.array([name.encode() for name in BEHAVIORS], dtype="S4").view(np.uint8).reshape(-1, 4)
_ROW_WIDTH = 10 + 1 + 10 + 1 + 10 + 1 + 4 + 1 + 10 + 1


def _layout(chunk: EventChunk) -> CodeArray:
    """The chunk's CSV lines as a fixed-width byte matrix, NUL-padded, built from digit tables.

    np.take rather than fancy indexing: it is faster for gathering table rows.
    """
    rows = np.zeros((len(chunk), _ROW_WIDTH), dtype=np.uint8)
    for column, values in ((0, chunk.user_id), (11, chunk.item_id), (22, chunk.category_id)):
        high, low = np.divmod(values, 100_000)
        rows[:, column : column + 5] = np.take(_UNPADDED, high, axis=0)
        rows[:, column + 5 : column + 10] = np.take(_LOW_HALF, low + 100_000 * (high > 0), axis=0)
    rows[:, 33:37] = np.take(_BEHAVIOR_BYTES, chunk.behavior, axis=0)
    high, low = np.divmod(chunk.ts, 100_000)  # in-window timestamps always have 10 digits
    rows[:, 38:43] = np.take(_PADDED, high, axis=0)
    rows[:, 43:48] = np.take(_PADDED, low, axis=0)
    rows[:, [10, 21, 32, 37]] = ord(",")
    rows[:, 48] = ord("\n")
    return rows


def _text(rows: CodeArray) -> bytes:
    return rows.tobytes().translate(None, b"\0")  # bytes.translate drops NULs faster than a numpy mask


# Dirty lines per clean line, by kind (~0.5 % in all); every chunk gets at least one of each kind.
_DUPLICATE, _OUT_OF_WINDOW, _GARBAGE, _UNKNOWN_BEHAVIOR, _EMPTY_FIELD = range(5)
_DIRT_RATE = {_DUPLICATE: 0.0030, _OUT_OF_WINDOW: 0.0012, _GARBAGE: 0.0002, _UNKNOWN_BEHAVIOR: 0.0003,
              _EMPTY_FIELD: 0.0003}  # fmt: skip
_GARBAGE_LINES = ("garbage,,x", "user_id,item_id,category_id,behavior_type,timestamp", "#N/A", "1;2;3;pv;4")
_UNKNOWN_BEHAVIORS = ("like", "share", "PV")
_YEAR_1902, _YEAR_2038 = -2_145_916_800, 2_145_916_800
_NEAR_WINDOW = 3 * 86_400


def _soil(text: bytes, layout: CodeArray, chunk: EventChunk, rng: np.random.Generator) -> tuple[bytes, int]:
    """Insert dirty lines into a chunk's text, each right after the clean row it was made from."""
    line_ends = np.cumsum(np.count_nonzero(layout, axis=1))
    # Sorted by (row, kind): a duplicate comes first, so it lands right next to its original.
    inserts = sorted(_dirty_lines(text, line_ends, chunk, rng))
    pieces, cut = [], 0
    for row, _, line in inserts:
        pieces += [text[cut : line_ends[row]], line]
        cut = int(line_ends[row])
    pieces.append(text[cut:])
    return b"".join(pieces), len(inserts)


def _dirty_lines(
    text: bytes, line_ends: IntArray, chunk: EventChunk, rng: np.random.Generator
) -> Iterator[tuple[int, int, bytes]]:
    """(source row, kind, line) of every dirty line for a chunk."""
    for kind, rate in _DIRT_RATE.items():
        count = min(len(chunk), max(1, round(len(chunk) * rate)))
        for row in rng.choice(len(chunk), size=count, replace=False).tolist():
            if kind == _DUPLICATE:
                yield row, kind, text[line_ends[row - 1] if row else 0 : line_ends[row]]
            else:
                yield row, kind, _dirty_line(kind, chunk, row, rng)


def _dirty_line(kind: int, chunk: EventChunk, row: int, rng: np.random.Generator) -> bytes:
    if kind == _GARBAGE:
        return (_GARBAGE_LINES[rng.integers(len(_GARBAGE_LINES))] + "\n").encode()
    fields = [
        str(chunk.user_id[row]),
        str(chunk.item_id[row]),
        str(chunk.category_id[row]),
        BEHAVIORS[chunk.behavior[row]],
        str(chunk.ts[row]),
    ]
    if kind == _OUT_OF_WINDOW:
        fields[4] = str(_outside_window(rng))
    elif kind == _UNKNOWN_BEHAVIOR:
        fields[3] = _UNKNOWN_BEHAVIORS[rng.integers(len(_UNKNOWN_BEHAVIORS))]
    else:
        fields[rng.integers(len(fields))] = ""
    return (",".join(fields) + "\n").encode()


def _outside_window(rng: np.random.Generator) -> int:
    """Half a few days off the window, half far off (any time 1902-2037, as the real file's broken clocks)."""
    near = int(rng.integers(_NEAR_WINDOW))
    side = rng.integers(4)  # 0, 1: just before or after the window; 2, 3: far off
    if side == 0:
        return TAOBAO_START - 1 - near
    if side == 1:
        return TAOBAO_END + near
    far = int(rng.integers(_YEAR_1902, _YEAR_2038))
    return far if not TAOBAO_START - _NEAR_WINDOW <= far < TAOBAO_END + _NEAR_WINDOW else far - 365 * 86_400
