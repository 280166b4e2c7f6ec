"""Cache keys made of what determines a step's output, never of time.

A key hashes: the task's own source, the miniplm library's code and SQL, the task's parameters (which
carry content fingerprints of inputs and models, never bulk data), and the work directory's identity.
A key cannot see whether the files a cached result points at still exist, so a cached step is trusted only while
its outputs do (`trusted_while_done`: the library step's own declaration of its outputs, `miniplm.store.step_outputs`,
checked before the task runs).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from prefect import Task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import TaskRunContext
from prefect.states import State
from prefect.tasks import exponential_backoff
from pydantic import BaseModel

from miniplm.progress import report_progress_to
from miniplm.store.hashing import code_fingerprint, stable_hash
from miniplm.store.step_outputs import arguments, outputs_there
from miniplm.store.workdir import Workdir

# Errors that a retry cannot fix: bad input, a missing or corrupt model, a weak reference, a missing file.
PERMANENT = (ValueError, TypeError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)


def transient(task, task_run, state) -> bool:
    """Retry what may pass (a network download, a lost node, a GPU out of memory), never a permanent error."""
    return not isinstance(state.data, PERMANENT)


RETRIES = dict(
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.2,
    retry_condition_fn=transient,
)
CACHED = dict(persist_result=True, cache_expiration=timedelta(days=365))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def task_source(task: Task) -> str:
    """The task function's source. A task sent to a worker process (a process per GPU, a Ray worker) carries a
    pickled copy of its function whose source cannot be found; the module's own task has it, and the same key."""
    try:
        return inspect.getsource(task.fn)
    except OSError:
        original = getattr(importlib.import_module(task.fn.__module__), task.fn.__name__)
        return inspect.getsource(getattr(original, "fn", original))


def step_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    workdir = parameters.get("workdir")
    identity = Workdir.open(workdir).identity if workdir else None
    source = task_source(context.task)
    return stable_hash("miniplm-step", context.task.name, source, code_fingerprint(), identity, _plain(parameters))


def trusted_while_done(step: Callable[..., Any]) -> Callable[[Task], Task]:
    """Mark a cached task: its cache entry is trusted only while the library `step` it wraps finds its outputs there
    (the step's `@produces`, asked with the task's arguments); otherwise the task runs again and refreshes the entry
    (see `run_step`)."""

    def mark(task: Task) -> Task:
        task.library_step = step
        return task

    return mark


def refreshed_if_gone(task: Task, *args: Any, **kwargs: Any) -> Task:
    """The task, told to run again and refresh its cache entry where the outputs that entry points at are gone."""
    step = getattr(task, "library_step", None)
    if step is not None and not outputs_there(step, arguments(task.fn, args, kwargs)):
        return task.with_options(refresh_cache=True)
    return task


def run_step(task: Task, *args: Any, **kwargs: Any) -> State:
    """Run a task and return its final state; a cached task whose outputs are gone runs again, refreshing its cache."""
    return refreshed_if_gone(task, *args, **kwargs)(*args, return_state=True, **kwargs)


@contextmanager
def progress_artifact(key: str, description: str):
    """Mirror the step's progress bar into a Prefect progress artifact."""
    artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
    last = [0.0]

    def update(percent: float) -> None:
        if percent - last[0] >= 1.0 or percent >= 100.0:
            last[0] = percent
            update_progress_artifact(artifact_id=artifact_id, progress=percent)

    with report_progress_to(update):
        yield
