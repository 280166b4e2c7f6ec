"""The experiment's students, trained as a map over runs on the task runner the device calls for.

train student ×runs: one at a time on one device; one per GPU on a node with several (a process each) or on a Ray
cluster with GPUs (a Ray task each)
"""

from __future__ import annotations

from prefect import flow
from prefect.futures import as_completed

from flows.runners import student_runner, task_resources
from flows.steplog import StepLog, figures, label, say
from miniplm.config import RunnerConfig, StudentConfig
from miniplm.experiment.arms import StudentRun
from tasks.caching import refreshed_if_gone
from tasks.experiment import train_run


@flow(name="miniplm-students", log_prints=True, flow_run_name="students")
def miniplm_students(
    workdir: str, runs: list[StudentRun], students: list[StudentConfig], eval_tokens: str | None, runner: RunnerConfig,
    ray_gpus: bool = False,
) -> list[dict]:  # fmt: skip
    """Train every run not trained yet (run i with student config i), each a Ray task given a GPU where `ray_gpus`;
    returns, in the runs' order, each one's summary and whether it was cached."""
    futures = {}
    with task_resources(runner, ray_gpus):
        for i, (run, student) in enumerate(zip(runs, students, strict=True)):
            task = refreshed_if_gone(train_run, workdir, run, student, eval_tokens)
            futures[task.submit(workdir, run, student, eval_tokens)] = i
    done: list[dict] = [{}] * len(runs)
    for future in as_completed(list(futures)):
        i, result = futures[future], future.result()
        cached = future.state.name == "Cached"
        detail, how = figures(result), "cached" if cached else f"done in {result.seconds:.1f} s"
        say(f"{label(train_run, (runs[i],))}: {how}" + (f" ({detail})" if detail else ""))
        done[i] = {"result": result, "cached": cached}
    return done


def train_runs(
    step: StepLog, workdir: str, runs: list[StudentRun], student: StudentConfig | list[StudentConfig],
    eval_tokens: str | None, runner: RunnerConfig,
) -> list[dict]:  # fmt: skip
    """Train `runs` (with one student config, or one per run) on the runner the students' device calls for, each
    counted in `step` as a step of its own."""
    if not runs:
        return []
    students = student if isinstance(student, list) else [student] * len(runs)
    runner_for, ray_gpus = student_runner(runner, students[0].train.device)
    if ray_gpus:  # a Ray task sees only the GPU Ray gave it, as cuda:0 (see flows.runners.task_score_config)
        students = [s.model_copy(update={"train": s.train.model_copy(update={"device": "cuda"})})
                    if s.train.device.startswith("cuda:") else s for s in students]  # fmt: skip
    say(f"train-student: {len(runs)} students")
    trained = miniplm_students.with_options(task_runner=runner_for)(workdir, runs, students, eval_tokens, runner,
                                                                    ray_gpus)  # fmt: skip
    for one in trained:
        step.record(train_run.name, cached=one["cached"], seconds=0.0 if one["cached"] else one["result"].seconds)
    return [one["result"] for one in trained]
