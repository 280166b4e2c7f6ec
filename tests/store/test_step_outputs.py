"""A cached step's outputs are declared once, on the library's step; the library, the Prefect task and its cache
all ask that declaration."""

import inspect

import pytest
from prefect import Task

from miniplm import pipeline_steps
from miniplm.config import SelectConfig
from miniplm.store.step_outputs import declared, done, produces
from tasks import experiment as experiment_tasks
from tasks import pipeline_tasks as step_tasks
from tasks.caching import refreshed_if_gone
from tests.workdirs import build_scored_workdir


def cached_tasks() -> list[Task]:
    tasks = [t for module in (step_tasks, experiment_tasks) for t in vars(module).values() if isinstance(t, Task)]
    return [t for t in tasks if t.cache_key_fn is not None]


def test_every_cached_task_is_trusted_while_its_library_steps_outputs_are_there():
    assert len(cached_tasks()) >= 12
    for task in cached_tasks():
        step = getattr(task, "library_step", None)
        assert step is not None, f"{task.name} is cached but trusted whatever its outputs"
        # the declaration names only parameters the task has, so the task can always ask it
        wanted = set(inspect.signature(declared(step)).parameters)
        assert wanted <= set(inspect.signature(task.fn).parameters), task.name


def test_done_asks_the_declaration_with_the_parameters_it_names():
    seen = []

    @produces(lambda b: seen.append(b) or b > 1)
    def step(a: int, b: int = 2) -> None: ...

    assert done(step, 0) and seen == [2]
    assert not done(step, 0, b=1)
    with pytest.raises(TypeError, match="declares no outputs"):
        done(lambda a: a, 0)


def test_a_selection_is_done_once_recorded_and_its_task_runs_again_when_its_files_are_gone(tmp_path):
    wd, manifest, _ = build_scored_workdir(tmp_path, [-1.0, -2.0, -3.0, -4.0], [-2.0] * 4, ["pool"] * 4)
    cfg = SelectConfig(alpha=0.5)
    args = (str(wd.root), manifest, cfg)
    assert not done(pipeline_steps.select, *args)
    assert refreshed_if_gone(step_tasks.select, *args).refresh_cache
    record = pipeline_steps.select(*args)
    assert done(pipeline_steps.select, *args) and not refreshed_if_gone(step_tasks.select, *args).refresh_cache
    wd.selected(record.selection_id).unlink()
    assert not done(pipeline_steps.select, *args) and refreshed_if_gone(step_tasks.select, *args).refresh_cache
