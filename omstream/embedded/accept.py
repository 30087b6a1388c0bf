"""Which event times the services accept, in words, and whether a file's events are among them.

The services' accepted range is part of their settings: by default it follows the clock (live
events); `demo` and `up --window-of FILE` fix it to a historical file's window. `omstream replay`
reads the range of the `omstream up` it feeds (from its status file), so it can refuse, in one line,
a file none of whose events would be accepted.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from omstream.embedded.supervisor import running_status
from omstream.settings import Settings
from stream.events import AcceptRange, FixedRange


class OutsideAcceptedRange(ValueError):
    """None of a file's events are in the range the services accept."""


_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def _duration(seconds: int) -> str:
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "0 seconds"


def describe(accept: AcceptRange, timezone: str) -> str:
    """The range for people: `2017-11-25 00:00 to 2017-12-04 00:00 (Asia/Shanghai)`, or the clock's."""
    if isinstance(accept, FixedRange):
        zone = ZoneInfo(timezone)
        first, end = (datetime.fromtimestamp(bound, zone) for bound in (accept.start, accept.end))
        return f"{first:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({timezone})"
    return f"the last {_duration(accept.back)} to {_duration(accept.ahead)} ahead of the clock"


def services_settings(settings: Settings) -> Settings:
    """These settings with the accepted range of the `omstream up` running on the state directory, which
    may differ from ours (`up --window-of`); ours when there is none or KAFKA_BOOTSTRAP names a cluster."""
    status = running_status(settings.state_dir)
    if settings.kafka_bootstrap or status is None:
        return settings
    return Settings.model_validate({**settings.model_dump(), **status["accept"]})


def check_fits(path: Path, window: FixedRange, settings: Settings, embedded: bool) -> str | None:
    """A ValueError when the services accept none of the file's window; a note when only part of it."""
    start, end = settings.accept_range.bounds()
    zone = settings.timezone
    if window.start < end and start < window.end:
        if start <= window.start and window.end <= end:
            return None
        return (
            f"note: the services accept {describe(settings.accept_range, zone)}, only part of {path}'s "
            f"window ({describe(window, zone)}): its other events go to the dead letters as out_of_window"
        )
    restart = (
        f"restart `omstream up --window-of {path}`"
        if embedded
        else "set OMSTREAM_ACCEPT_FROM and OMSTREAM_ACCEPT_TO of the services to its window"
    )
    raise OutsideAcceptedRange(
        f"{path} holds events of {describe(window, zone)}, and the services accept none of them "
        f"(they accept {describe(settings.accept_range, zone)}): replay it as live traffic with "
        f"`omstream replay {path} --live`, or {restart}"
    )
