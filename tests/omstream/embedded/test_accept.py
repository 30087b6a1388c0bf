"""Whether a file's events are among those the services accept, said before a replay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from omstream.embedded.accept import OutsideAcceptedRange, check_fits
from omstream.settings import Settings
from stream.events import FixedRange
from stream.sources.taobao import FileTimes

DAY = 86_400


def live_file(first: int, last: int) -> FileTimes:
    """A file of events from `first` to `last`: its window is whole days, so it ends after `last`."""
    return FileTimes(FixedRange(first - first % DAY, last - last % DAY + DAY), FixedRange(first, last + 1))


def test_a_file_whose_events_are_all_accepted_gets_no_note(tmp_path: Path) -> None:
    now = int(time.time())
    settings = Settings(state_dir=tmp_path)  # the last 7 days to 5 minutes ahead of the clock
    assert check_fits(tmp_path / "recent.csv", live_file(now - 3 * 3_600, now - 60), settings, True) is None


def test_a_file_partly_accepted_gets_a_note_naming_the_span_of_its_events(tmp_path: Path) -> None:
    now = int(time.time())
    note = check_fits(
        tmp_path / "f.csv", live_file(now - 9 * DAY, now - 60), Settings(state_dir=tmp_path), True
    )
    assert note is not None and "only some of" in note and "the others go to the dead letters" in note


def test_a_file_none_of_whose_events_are_accepted_is_refused_saying_how_to_load_it(tmp_path: Path) -> None:
    times = live_file(1_511_600_000, 1_512_000_000)
    with pytest.raises(OutsideAcceptedRange, match=r"--live.*omstream up --window-of"):
        check_fits(tmp_path / "old.csv", times, Settings(state_dir=tmp_path), True)
