"""Which steps of a flow ran, which were answered from the cache, and how long each took, for the run's summary;
and one line as each step starts and ends, with its figures, on the terminal (stderr, whether or not it is a
terminal) and in the run's log."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, is_dataclass
from typing import Any

from prefect.states import State
from pydantic import BaseModel

from miniplm.selection.run_summary import StepsTaken
from tasks.caching import run_step

# result fields worth a word on the step's closing line, in this order, with how to show them
FIGURES = (
    ("rows_read", "{:,} rows"),
    ("written", "{:,} documents"),
    ("quarantined", "{:,} quarantined"),
    ("instances", "{:,} instances"),
    ("tokens", "{:,} tokens"),
    ("reference", "{:,} D_ref documents"),
    ("heldout", "{:,} held-out"),
    ("pool", "{:,} pool documents"),
    ("n_selected", "kept {:,}"),
    ("n_candidates", "of {:,} candidates"),
    ("threshold", "threshold {:.4f}"),
    ("student_tokens", "{:,} student tokens"),
    ("steps", "{:,} steps"),
    ("final_eval_loss", "eval loss {:.4f}"),
    ("instances_scored", "{:,} instances scored"),
    ("tokens_per_s", "{:,.0f} tokens/s"),
)


def figures(result: Any) -> str:
    if isinstance(result, BaseModel):
        result = result.model_dump()
    elif is_dataclass(result):
        result = asdict(result)
    if not isinstance(result, dict):
        return ""
    shown = []
    for key, fmt in FIGURES:
        value = result.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown.append(fmt.format(value))
    return ", ".join(shown)


def label(task, args: tuple) -> str:
    """The task's name and what it works on (a source, a model, a student), as its run is named."""
    for arg in args:
        if hasattr(arg, "spec") and hasattr(arg, "source_key"):
            return f"{task.name} {arg.spec}"
        if hasattr(arg, "arm") and hasattr(arg, "seed"):
            rate = f" lr {arg.learning_rate:g}" if hasattr(arg, "learning_rate") else ""
            return f"{task.name} {arg.arm} a={arg.alpha} seed {arg.seed}{rate}"
    return task.name


def say(message: str) -> None:
    """A line for the person running it: stderr (the CLI keeps stdout for its result) and the run's log."""
    sys.stderr.write(f"[miniplm] {message}\n")
    sys.stderr.flush()
    try:
        from prefect import get_run_logger

        get_run_logger().info(message)
    except Exception:  # outside a flow run: the terminal line is enough
        pass


class StepLog:
    """Runs tasks and remembers which ones were answered from the cache, and their wall time."""

    def __init__(self) -> None:
        self.cached: list[str] = []
        self.ran: list[str] = []
        self.seconds: dict[str, float] = {}

    def __call__(self, task, *args: Any, **kwargs: Any) -> Any:
        name = label(task, args)
        say(f"{name}: started")
        start = time.perf_counter()
        state: State = run_step(task, *args, **kwargs)
        seconds = time.perf_counter() - start
        cached = state.name == "Cached"
        self.record(task.name, cached=cached, seconds=seconds)
        result = state.result()
        detail = figures(result)
        say(f"{name}: {'cached' if cached else 'done'} in {seconds:.1f} s" + (f" ({detail})" if detail else ""))
        return result

    def record(self, name: str, cached: bool, seconds: float = 0.0) -> None:
        (self.cached if cached else self.ran).append(name)
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)

    def merge(self, other: StepsTaken) -> None:
        """Count a sub-flow's steps (prepare's in the pipeline, the pipeline's in the experiment) as this flow's."""
        self.cached += other.steps_cached
        self.ran += other.steps_run
        for name, seconds in other.step_seconds.items():
            self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)

    def report(self) -> StepsTaken:
        return StepsTaken(steps_cached=self.cached, steps_run=self.ran, step_seconds=self.seconds)
