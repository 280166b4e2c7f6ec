"""Progress for long steps: a tqdm bar in the terminal plus an optional callback (Prefect adds an artifact)."""

from __future__ import annotations

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

    def update(self, n: int) -> None:
        self.done += n
        self._tqdm.update(n)
        now = time.monotonic()
        if _listeners and (now - self._last >= self._min_interval_s or self.done >= self.total):
            self._last = now
            percent = 100.0 * self.done / self.total if self.total else 100.0
            for listener in list(_listeners):
                listener(min(percent, 100.0))

    def close(self) -> None:
        self._tqdm.close()


@contextmanager
def progress_bar(total: int, desc: str, unit: str = "it") -> Iterator[Bar]:
    bar = Bar(total, desc, unit)
    try:
        yield bar
    finally:
        bar.close()
