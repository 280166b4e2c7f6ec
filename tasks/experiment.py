"""The experiment's steps as Prefect tasks: thin wrappers over `miniplm.experiment.arms` with caching and artifacts."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from miniplm.config import ExperimentConfig, StudentConfig
from miniplm.experiment import arms as lib
from miniplm.experiment.arms import ArmData, ArmOptions, StudentRun
from miniplm.experiment.report import write_experiment_report
from miniplm.scoring.devices import use_claimed_gpu
from miniplm.selection.select import SelectionRecord
from miniplm.store.manifest import RunManifest
from miniplm.training.evaluate import EvalSet
from miniplm.training.train_summary import Evaluation, TrainedRun
from tasks.caching import CACHED, RETRIES, progress_artifact, step_cache_key, trusted_while_done


@task(name="student-tokenizer", cache_policy=NO_CACHE)
def student_tokenizer(workdir: str, manifest: RunManifest, student: StudentConfig) -> StudentConfig:
    """The student with its tokenizer made concrete (a BPE fitted on the pool for `train:N`, made once)."""
    return lib.resolve_student(workdir, manifest, student)


@task(name="eval-set", cache_policy=NO_CACHE)
def eval_set(workdir: str, manifest: RunManifest, student: StudentConfig, cfg: ExperimentConfig) -> EvalSet:
    """The target documents and the held-out documents, tokenized for the student (made once, then read back)."""
    return lib.prepare_eval_set(workdir, manifest, student, cfg)


@trusted_while_done(lib.arm_data)
@task(name="arm-data", cache_key_fn=step_cache_key, **CACHED, task_run_name="data {arm} a={alpha} seed {seed}")
def arm_data(
    workdir: str,
    manifest: RunManifest,
    arm: str,
    alpha: float,
    seed: int | None,
    selection: SelectionRecord,
    student: StudentConfig,
    options: ArmOptions,
) -> ArmData:
    """One arm's members, exported in the student's tokenizer."""
    return lib.arm_data(workdir, manifest, arm, alpha, seed, selection, student, options)


@trusted_while_done(lib.train_run)
@task(
    name="train-student",
    cache_key_fn=step_cache_key,
    **CACHED,
    **RETRIES,
    task_run_name="train {run.arm} a={run.alpha} seed {run.seed} lr {run.learning_rate}",
)
def train_run(workdir: str, run: StudentRun, student: StudentConfig, eval_tokens: str | None) -> TrainedRun:
    """Train one student for the experiment's steps (resumes from its last checkpoint after a crash)."""
    use_claimed_gpu()
    with progress_artifact(f"train-{run.arm}-{run.seed}".replace("_", "-"), f"train {run.arm} seed {run.seed}"):
        return lib.train_run(workdir, run, student, eval_tokens)


@trusted_while_done(lib.evaluate_run)
@task(
    name="evaluate-student",
    cache_key_fn=step_cache_key,
    **CACHED,
    task_run_name="evaluate {run.arm} a={run.alpha} seed {run.seed}",
)
def evaluate_run(workdir: str, run: StudentRun, student: StudentConfig, eval_set: EvalSet) -> Evaluation:
    """Per-document losses of one student on the target and held-out documents."""
    return lib.evaluate_run(workdir, run, student, eval_set)


@trusted_while_done(lib.harness_run)
@task(
    name="lm-eval",
    cache_key_fn=step_cache_key,
    **CACHED,
    task_run_name="lm-eval {run.arm} a={run.alpha} seed {run.seed}",
)
def harness_run(workdir: str, run: StudentRun, student: StudentConfig, cfg: ExperimentConfig) -> dict:
    """One student on the lm-evaluation-harness tasks (those whose data cannot be reached say so)."""
    return lib.harness_run(workdir, run, student, cfg)


@task(name="experiment-report", cache_policy=NO_CACHE)
def report(
    workdir: str,
    manifest: RunManifest,
    student: StudentConfig,
    cfg: ExperimentConfig,
    runs: list[StudentRun],
    evaluations: list[Evaluation],
    eval_set: EvalSet,
    selections: dict[float, SelectionRecord],
    harness: list[dict],
    tuning: dict | None = None,
    skipped: dict[str, str] | None = None,
) -> dict:
    """The report (markdown, JSON, plots) in the work directory, and the same as artifacts on the run page."""
    result = write_experiment_report(workdir, manifest, student, cfg, runs, evaluations, eval_set, selections, harness,
                                     tuning, skipped)  # fmt: skip
    create_markdown_artifact(
        key="experiment-report",
        description="MiniPLM experiment: every arm, same student, same compute",
        markdown=Path(result["report_files"]["markdown"]).read_text(),
    )
    main = result["main_evaluation"]
    rows = []
    for alpha, block in result["alphas"].items():
        for arm in block["arms"]:
            ev, diff = arm["evals"].get(main) or {}, arm["vs_uniform"].get(main) or {}
            rows.append(
                {
                    "alpha": alpha,
                    "arm": arm["arm"],
                    "seeds": arm["seeds"],
                    "steps": arm["steps"],
                    f"{main} loss": ev.get("mean"),
                    "std": ev.get("std"),
                    "vs uniform": diff.get("diff"),
                    "ci low": diff.get("ci_low"),
                    "ci high": diff.get("ci_high"),
                    "seeds ci low": diff.get("seed_ci_low"),
                    "seeds ci high": diff.get("seed_ci_high"),
                    "flops": arm["flops"],
                }
            )
    create_table_artifact(key="experiment-arms", table=rows, description="Loss by arm (nats/token)")
    return result
