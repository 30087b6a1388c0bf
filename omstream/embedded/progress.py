"""Long work with a progress bar (tqdm, on stderr): generating and replaying events."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from omstream import services
from omstream.settings import Settings
from stream.emitter import EmitReport
from stream.events import FixedRange
from stream.replay import Pacer, replay_file
from stream.sources.generator import generate_csv


class ProgressBar(tqdm):
    def update_to(self, done: int) -> None:
        """Set absolute progress (callbacks report totals so far, not increments)."""
        self.update(done - self.n)


def progress_bar(total: int, unit: str, desc: str, **options: Any) -> ProgressBar:
    scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {"unit_scale": True}
    return ProgressBar(
        total=total,
        unit=unit,
        desc=desc,
        file=sys.stderr,
        mininterval=0.5,
        leave=True,
        **scale,
        **options,
    )


def generate_with_progress(out: Path, events: int, seed: int, dirty: bool) -> None:
    with progress_bar(total=events, unit="ev", desc="generate") as bar:
        generate_csv(out, events=events, seed=seed, dirty=dirty, on_progress=bar.update_to)


async def replay_with_progress(
    path: Path,
    settings: Settings,
    bootstrap: str,
    pack: int | None = None,
    pacer: Pacer | None = None,
    live: FixedRange | None = None,
    time_ordered: bool = False,
) -> EmitReport:
    async with services.emitter(settings, bootstrap, pack) as emitter:
        with progress_bar(total=path.stat().st_size, unit="B", desc=f"replay {path.name}") as bar:
            return await replay_file(path, emitter, pacer, bar.update_to, live, time_ordered)
