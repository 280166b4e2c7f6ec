"""Progress for long steps: a tqdm bar in the terminal plus an optional callback (Prefect adds an artifact). Where
stderr is not a terminal (a log file, a cluster job's output), a line every `MINIPLM_PROGRESS_SECONDS` (60) instead,
so an hour of training or scoring is not an hour of silence."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

ProgressCallback = Callable[[float], None]  # percent done, 0..100

_listeners: list[ProgressCallback] = []


@contextmanager
def report_progress_to(callback: ProgressCallback) -> Iterator[None]:
    """Route every bar opened inside this block to `callback` too (throttled)."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


class Bar:
    def __init__(self, total: int, desc: str, unit: str, min_interval_s: float = 2.0) -> None:
        self.total = max(int(total), 0)
        self.done = 0
        self._tqdm = tqdm(
            total=self.total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, disable=None, leave=False
        )
        self._last = 0.0
        self._min_interval_s = min_interval_s
        self.desc, self.unit = desc, unit
        self._started = self._last_line = time.monotonic()
        self._line_interval_s = float(os.environ.get("MINIPLM_PROGRESS_SECONDS", "60"))

    def update(self, n: int) -> None:
        self.done += n
        self._tqdm.update(n)
        now = time.monotonic()
        if self._tqdm.disable and now - self._last_line >= self._line_interval_s and self.done < self.total:
            self._last_line = now
            self._line(now)
        if _listeners and (now - self._last >= self._min_interval_s or self.done >= self.total):
            self._last = now
            percent = 100.0 * self.done / self.total if self.total else 100.0
            for listener in list(_listeners):
                listener(min(percent, 100.0))

    def _line(self, now: float) -> None:
        elapsed = now - self._started
        left = elapsed * (self.total - self.done) / self.done if self.done else float("nan")
        done = f"{100.0 * self.done / self.total:.0f}% ({self.done:,} of {self.total:,} {self.unit})"
        sys.stderr.write(f"[miniplm] {self.desc}: {done}, {clock(elapsed)} so far, about {clock(left)} left\n")
        sys.stderr.flush()

    def close(self) -> None:
        self._tqdm.close()


def clock(seconds: float) -> str:
    """1 h 05 min, 12 min 30 s, 45 s."""
    if seconds != seconds:  # NaN: nothing to go by yet
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@contextmanager
def progress_bar(total: int, desc: str, unit: str = "it") -> Iterator[Bar]:
    bar = Bar(total, desc, unit)
    try:
        yield bar
    finally:
        bar.close()
