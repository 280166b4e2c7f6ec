"""The paper's experiment as a Prefect flow: the pipeline's scores, then the same student on every arm's data.

pipeline (prepare, reference, scores) ─ eval sets ─┬─ select (per alpha) ─ arm data ×arms×seeds ─┐
                                                   └──────────────── train ─ evaluate ×runs ─────┴─ report
"""

from __future__ import annotations

from prefect import flow

from flows.exclusive import exclusive
from flows.pipeline import miniplm_pipeline
from flows.steplog import StepLog, say
from miniplm import experiment as lib
from miniplm.config import ExperimentConfig, PipelineConfig, SelectConfig
from miniplm.steps import previous_manifest
from tasks import experiment as tasks
from tasks import steps


@flow(name="miniplm-experiment", log_prints=True, flow_run_name="experiment {config.workdir}")
def miniplm_experiment(config: PipelineConfig, experiment: ExperimentConfig = ExperimentConfig()) -> dict:
    """Train the same student under the same compute on Difference Sampling's data and on every baseline's."""
    with exclusive(config) as workdir:
        return _experiment(config, experiment, workdir)


def _experiment(config: PipelineConfig, experiment: ExperimentConfig, workdir: str) -> dict:
    step = StepLog()

    # 1 the pipeline: data path, reference, both models' scores, the first alpha's selection; the arms train the
    # students, so the pipeline trains none
    pipeline_config = config.model_copy(
        update={
            "select": SelectConfig(alpha=experiment.alphas[0]),
            "student": config.student.model_copy(update={"enabled": False}),
        }
    )
    pipeline = miniplm_pipeline(pipeline_config)
    step.merge(pipeline)
    manifest = previous_manifest(workdir)
    student, band = config.student, experiment.perplexity_band

    # 2 what the students are judged on: the target set (never in the corpus) and the held-out documents
    eval_set = step(tasks.eval_set, workdir, manifest, student, experiment)

    # 3 per alpha: Difference Sampling's selection, then every arm's data (uniform drawn afresh per seed)
    kd_blocked = lib.kd_allowed(manifest, student) if "kd" in experiment.arms else None
    if kd_blocked:
        say(f"Vanilla KD skipped: {kd_blocked}")
    selections, data, train_steps = {}, {}, {}
    for alpha in experiment.alphas:
        selections[alpha] = step(steps.select, workdir, manifest, SelectConfig(alpha=alpha))
        kept = step(tasks.arm_data, workdir, manifest, "miniplm", alpha, None, selections[alpha], student, band)
        train_steps[alpha] = lib.steps_for_alpha(kept, student)
        for arm in experiment.arms:
            if arm == "kd" and kd_blocked:
                continue
            shared = None
            for seed in range(experiment.seeds):
                if arm == "miniplm":
                    data[(arm, alpha, seed)] = kept
                elif arm in lib.SEEDED_DATA or shared is None:
                    shared = step(tasks.arm_data, workdir, manifest, arm, alpha, seed if arm in lib.SEEDED_DATA else
                                  None, selections[alpha], student, band)  # fmt: skip
                    data[(arm, alpha, seed)] = shared
                else:
                    data[(arm, alpha, seed)] = shared

    # 4 the students: same steps, schedule, batch and sequence length on every arm; then their losses per document
    # (and, if asked, their lm-evaluation-harness scores)
    runs = lib.plan_runs(workdir, manifest, student, experiment, data, train_steps)
    say(f"{len(runs)} students to train ({experiment.seeds} seeds x {len(experiment.arms)} arms x "
          f"{len(experiment.alphas)} alphas); steps per alpha: {train_steps}")  # fmt: skip
    for run in runs:
        step(tasks.train_run, workdir, run, student, eval_set["tokens_path"])
    evaluations = [step(tasks.evaluate_run, workdir, run, student, eval_set) for run in runs]
    harness = [step(tasks.harness_run, workdir, run, student, experiment) if experiment.lm_eval_tasks else {}
               for run in runs]  # fmt: skip

    # 5 the report: per arm, mean and spread over seeds, paired difference to the uniform arm, plots
    result = step(
        tasks.report, workdir, manifest, student, experiment, runs, evaluations, eval_set, selections, harness
    )
    return {"pipeline": pipeline, **result, **step.report()}
