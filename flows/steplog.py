"""Which steps of a flow ran, which were answered from the cache, and how long each took, for the run's summary."""

from __future__ import annotations

import time
from typing import Any

from prefect.states import State

from tasks.caching import run_step


class StepLog:
    """Runs tasks and remembers which ones were answered from the cache, and their wall time."""

    def __init__(self) -> None:
        self.cached: list[str] = []
        self.ran: list[str] = []
        self.seconds: dict[str, float] = {}

    def __call__(self, task, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        state: State = run_step(task, *args, **kwargs)
        self.record(task.name, cached=state.name == "Cached", seconds=time.perf_counter() - start)
        return state.result()

    def record(self, name: str, cached: bool, seconds: float = 0.0) -> None:
        (self.cached if cached else self.ran).append(name)
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)

    def merge(self, other: dict) -> None:
        self.cached += other["steps_cached"]
        self.ran += other["steps_run"]
        for name, seconds in other["step_seconds"].items():
            self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)

    def report(self) -> dict:
        return {"steps_cached": self.cached, "steps_run": self.ran, "step_seconds": self.seconds}
