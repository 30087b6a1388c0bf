"""The synthetic Taobao generator: format, determinism, exact counts, and the statistics it must reproduce.

Statistics are recomputed here from the CSV read back, with plain numpy, not with generator internals.
"""

from __future__ import annotations

import gzip
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from stream.events import BEHAVIORS
from stream.sources.generator import generate_chunks, generate_csv

EVENTS = 200_000
WINDOW = (1_511_539_200, 1_512_316_800)  # 2017-11-25 00:00 to 2017-12-04 00:00, China time
CHINA = 8 * 3600  # Asia/Shanghai is UTC+8 all year (no DST since 1991)
DEC_2 = 7  # day index from 2017-11-25
YEAR_1902, YEAR_2038 = -2_145_916_800, 2_145_916_800


@dataclass
class Table:
    user: np.ndarray
    item: np.ndarray
    category: np.ndarray
    behavior: np.ndarray  # strings
    ts: np.ndarray

    @property
    def day(self) -> np.ndarray:
        return (self.ts + CHINA) // 86_400 - (WINDOW[0] + CHINA) // 86_400

    @property
    def hour(self) -> np.ndarray:
        return (self.ts + CHINA) // 3600 % 24


def parse(lines: list[bytes]) -> Table:
    user, item, category, behavior, ts = zip(*(line.decode().split(",") for line in lines), strict=True)
    ints = [np.array(column, dtype=np.int64) for column in (user, item, category, ts)]
    return Table(ints[0], ints[1], ints[2], np.array(behavior), ints[3])


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("generated") / "taobao.csv"
    generate_csv(path, EVENTS, seed=7)
    return path


@pytest.fixture(scope="module")
def table(csv_path: Path) -> Table:
    return parse(csv_path.read_bytes().splitlines())


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    for name, seed in (("a.csv", 1), ("b.csv", 1), ("c.csv", 2), ("a.csv.gz", 1), ("b.csv.gz", 1)):
        generate_csv(tmp_path / name, 20_000, seed=seed, dirty=True)
    read = {
        name: (tmp_path / name).read_bytes() for name in ("a.csv", "b.csv", "c.csv", "a.csv.gz", "b.csv.gz")
    }
    assert read["a.csv"] == read["b.csv"]
    assert read["a.csv"] != read["c.csv"]
    assert read["a.csv.gz"] == read["b.csv.gz"]  # no timestamp or name in the gzip header


def test_gzip_round_trip(tmp_path: Path) -> None:
    plain = generate_csv(tmp_path / "plain.csv", 30_000, seed=3)
    packed = generate_csv(tmp_path / "packed.csv.gz", 30_000, seed=3)
    data = (tmp_path / "plain.csv").read_bytes()
    assert gzip.decompress((tmp_path / "packed.csv.gz").read_bytes()) == data
    assert len((tmp_path / "packed.csv.gz").read_bytes()) < len(data) / 2
    assert (plain.rows, plain.events, plain.users) == (packed.rows, packed.events, packed.users)


@pytest.mark.parametrize("events", [1, 2, 99, 1_000, 23_457])
def test_exact_event_count(tmp_path: Path, events: int) -> None:
    summary = generate_csv(tmp_path / "out.csv", events, seed=events)
    lines = (tmp_path / "out.csv").read_bytes().splitlines()
    assert len(lines) == summary.events == summary.rows == events
    assert summary.dirty == 0
    assert summary.users == len({line.split(b",")[0] for line in lines}) >= 1
    assert summary.seconds >= 0


def test_zero_events_gives_an_empty_file(tmp_path: Path) -> None:
    summary = generate_csv(tmp_path / "out.csv", 0)
    assert (tmp_path / "out.csv").read_bytes() == b""
    assert (summary.rows, summary.events, summary.users, summary.dirty) == (0, 0, 0, 0)


def test_negative_events_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="events"):
        generate_csv(tmp_path / "out.csv", -1)
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_taobao_format_sorted_by_user_not_by_time(table: Table) -> None:
    assert len(table.ts) == EVENTS
    assert set(table.behavior.tolist()) == {"pv", "fav", "cart", "buy"}
    assert WINDOW[0] <= table.ts.min() and table.ts.max() < WINDOW[1]
    assert np.all(np.diff(table.user) >= 0)
    assert np.any(np.diff(table.ts) < 0)
    same_user = np.diff(table.user) == 0
    assert np.all(np.diff(table.ts)[same_user] > 0)  # each user's rows in time order
    users = len(np.unique(table.user))
    assert 90 <= EVENTS / users <= 110
    assert min(table.user.min(), table.item.min(), table.category.min()) >= 1


def test_csv_lines_are_the_chunks(csv_path: Path) -> None:
    chunks = generate_chunks(EVENTS, seed=7)
    first = next(chunks)
    expected = [
        f"{user},{item},{category},{BEHAVIORS[code]},{ts}".encode()
        for user, item, category, code, ts in zip(
            first.user_id.tolist(),
            first.item_id.tolist(),
            first.category_id.tolist(),
            first.behavior.tolist(),
            first.ts.tolist(),
            strict=True,
        )
    ]
    assert csv_path.read_bytes().splitlines()[: len(expected)] == expected


def test_behaviour_mix(table: Table) -> None:
    counts = Counter(table.behavior.tolist())
    share = {name: counts[name] / EVENTS for name in ("pv", "cart", "fav", "buy")}
    assert share["pv"] == pytest.approx(0.8958, abs=0.006)
    assert share["cart"] == pytest.approx(0.0552, abs=0.003)
    assert share["fav"] == pytest.approx(0.0288, abs=0.002)
    assert share["buy"] == pytest.approx(0.0201, abs=0.0015)


def test_hourly_curve_peaks_at_21_and_bottoms_at_dawn(table: Table) -> None:
    per_hour = np.bincount(table.hour, minlength=24)
    assert per_hour.argmax() == 21
    assert per_hour.argmin() in (4, 5)
    assert per_hour[21] > 1.05 * max(per_hour[20], per_hour[22])


def test_dec_2_spike_is_the_only_mad_outlier(table: Table) -> None:
    assert sorted(set(table.day.tolist())) == list(range(9))
    pv = np.bincount(table.day[table.behavior == "pv"], minlength=9)
    median = np.median(pv)
    mad = np.median(np.abs(pv - median))
    assert pv.argmax() == DEC_2
    assert np.flatnonzero(np.abs(pv - median) > 3 * mad).tolist() == [DEC_2]
    assert 1.25 <= pv[DEC_2] / median <= 1.45
    assert pv[DEC_2 + 1] > pv[2:6].max()  # Sunday Dec 3 is above the Monday-Thursday days


def activity(table: Table) -> tuple[np.ndarray, np.ndarray]:
    """(users x days active matrix, first active day per user)."""
    _, user = np.unique(table.user, return_inverse=True)
    active = np.zeros((user.max() + 1, 9), dtype=bool)
    active[user, table.day] = True
    return active, active.argmax(axis=1)


def test_users_arrive_early_and_come_back(table: Table) -> None:
    active, first = activity(table)
    new_per_day = np.bincount(first, minlength=9)
    assert new_per_day[0] / len(first) >= 0.6
    assert np.all(np.diff(new_per_day[:4]) < 0)
    cohort_0 = active[first == 0, 1].mean()
    pooled = sum(active[first == day, day + 1].sum() for day in range(8)) / np.sum(first < 8)
    assert 0.65 <= cohort_0 <= 0.85
    assert 0.65 <= pooled <= 0.85


def test_buys_per_buyer_and_repurchase(table: Table) -> None:
    buys = table.behavior == "buy"
    buyers, per_buyer = np.unique(table.user[buys], return_counts=True)
    assert 2.5 <= per_buyer.mean() <= 3.3
    buy_days = {
        (user, day) for user, day in zip(table.user[buys].tolist(), table.day[buys].tolist(), strict=True)
    }
    days_per_buyer = Counter(user for user, _ in buy_days)
    repurchase = sum(days >= 2 for days in days_per_buyer.values()) / len(buyers)
    assert 0.55 <= repurchase <= 0.75


def test_category_sales_are_pareto_like(table: Table) -> None:
    assert len(np.unique(table.category)) >= 300
    _, sales = np.unique(table.category[table.behavior == "buy"], return_counts=True)
    cumulative = np.cumsum(np.sort(sales)[::-1]) / sales.sum()
    needed = int(np.searchsorted(cumulative, 0.8)) + 1
    assert needed / len(sales) <= 0.3


def test_items_scale_and_belong_to_one_category(table: Table) -> None:
    items = len(np.unique(table.item))
    assert 0.8 <= items / (EVENTS * 4_162_024 / 100_150_807) <= 1.05
    pairs = np.unique(np.stack([table.item, table.category]), axis=1)
    assert pairs.shape[1] == items


def test_carts_and_buys_follow_a_view_of_the_item(table: Table) -> None:
    seen: set[tuple[int, int]] = set()
    after_view = Counter[str]()
    for user, item, behavior in zip(
        table.user.tolist(), table.item.tolist(), table.behavior.tolist(), strict=True
    ):
        if behavior == "pv":
            seen.add((user, item))
        else:
            after_view[behavior] += (user, item) in seen
    counts = Counter(table.behavior.tolist())
    assert after_view["cart"] / counts["cart"] >= 0.9
    assert after_view["buy"] / counts["buy"] >= 0.9


def classify(line: bytes, previous: bytes | None) -> str:
    if line == previous:
        return "duplicate"
    fields = line.decode().split(",")
    if len(fields) != 5:
        return "garbage"
    if "" in fields:
        return "empty field"
    if not all(field.lstrip("-").isdigit() for field in (*fields[:3], fields[4])):
        return "garbage"
    if fields[3] not in BEHAVIORS:
        return "unknown behaviour"
    if not WINDOW[0] <= int(fields[4]) < WINDOW[1]:
        return "out of window"
    return "clean"


def test_dirty_rows_of_every_kind(tmp_path: Path) -> None:
    summary = generate_csv(tmp_path / "dirty.csv", 40_000, seed=5, dirty=True)
    generate_csv(tmp_path / "clean.csv", 40_000, seed=5)
    lines = (tmp_path / "dirty.csv").read_bytes().splitlines()
    kinds = [classify(line, previous) for line, previous in zip(lines, [None, *lines[:-1]], strict=True)]
    counts = Counter(kinds)
    assert set(counts) == {
        "clean",
        "duplicate",
        "garbage",
        "empty field",
        "unknown behaviour",
        "out of window",
    }
    assert summary.events == counts["clean"] == 40_000
    assert summary.rows == len(lines) == summary.events + summary.dirty
    assert 0.003 <= summary.dirty / summary.rows <= 0.008
    assert b"garbage,,x" in lines
    clean = [line for line, kind in zip(lines, kinds, strict=True) if kind == "clean"]
    assert clean == (tmp_path / "clean.csv").read_bytes().splitlines()
    off = [
        int(line.split(b",")[4]) for line, kind in zip(lines, kinds, strict=True) if kind == "out of window"
    ]
    assert all(YEAR_1902 <= ts < YEAR_2038 for ts in off)
    assert any(ts < 1_000_000_000 for ts in off)  # far off, like the real file's broken clocks
    assert any(abs(ts - WINDOW[0]) < 4 * 86_400 or abs(ts - WINDOW[1]) < 4 * 86_400 for ts in off)


def test_chunks_are_bounded_and_progress_is_reported(tmp_path: Path) -> None:
    events = 500_000
    sizes, last_users = [], -1
    for chunk in generate_chunks(events, seed=11):
        sizes.append(len(chunk))
        assert chunk.behavior.dtype == np.uint8
        assert chunk.user_id[0] > last_users  # a user never spans two chunks
        last_users = chunk.user_id[-1]
    assert sum(sizes) == events
    assert len(sizes) >= 2
    assert max(sizes) <= 250_000
    progress: list[int] = []
    summary = generate_csv(tmp_path / "out.csv", events, seed=11, on_progress=progress.append)
    assert len(progress) == len(sizes)
    assert progress == sorted(set(progress))
    assert progress[-1] == summary.rows == events


def test_writing_over_a_directory_fails_and_leaves_no_partial_file(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        generate_csv(folder, events=10)
    assert sorted(tmp_path.iterdir()) == [folder]
