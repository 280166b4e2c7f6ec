"""Which steps of a flow ran and which were answered from the cache, for the run's summary."""

from __future__ import annotations

from typing import Any

from prefect.states import State


class StepLog:
    """Runs tasks and remembers which ones were answered from the cache."""

    def __init__(self) -> None:
        self.cached: list[str] = []
        self.ran: list[str] = []

    def __call__(self, task, *args: Any, **kwargs: Any) -> Any:
        state: State = task(*args, return_state=True, **kwargs)
        (self.cached if state.name == "Cached" else self.ran).append(task.name)
        return state.result()

    def record(self, name: str, cached: bool) -> None:
        (self.cached if cached else self.ran).append(name)

    def merge(self, other: dict) -> None:
        self.cached += other["steps_cached"]
        self.ran += other["steps_run"]
