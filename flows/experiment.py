"""The paper's experiment as a Prefect flow: the pipeline's scores, then the same student on every arm's data.

pipeline (prepare, reference, scores) ─ student tokenizer ─ eval sets ─┬─ select (per alpha) ─ arm data ×arms×seeds
                                                                       └─ tune the learning rate on the uniform arm
  ─ train ×runs (one per GPU where there are several) ─ evaluate ×runs ─ report
"""

from __future__ import annotations

from prefect import flow

from flows.exclusive import exclusive
from flows.pipeline import miniplm_pipeline
from flows.runners import scoring_gpus
from flows.scoring import score_with
from flows.steplog import StepLog, figures, say
from flows.students import train_runs
from miniplm.config import ExperimentConfig, PipelineConfig, SelectConfig
from miniplm.experiment import arms as lib
from miniplm.pipeline_steps import previous_manifest
from miniplm.pipeline_steps import select as select_library
from tasks import experiment as tasks
from tasks import pipeline_tasks


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

    # 2 the student's tokenizer (its own, fitted on the pool, when asked) and what the students are judged on: the
    # target set (never in the corpus) and the held-out documents
    student = step(tasks.student_tokenizer, workdir, manifest, config.student)
    eval_set = step(tasks.eval_set, workdir, manifest, student, experiment)

    # 3 the checks that need more than the pipeline: the other reference size's scores, the control's sources
    skipped, options = {}, lib.ArmOptions(band=experiment.perplexity_band, control_sources=experiment.control_sources,
                                          temperature=experiment.temperature)  # fmt: skip
    arms = list(experiment.arms)
    if "kd" in arms and (why := lib.kd_allowed(manifest, student)):
        skipped["kd"] = why
    if "control" in arms and not experiment.control_sources:
        skipped["control"] = "no control sources given (--control-source FILE)"
    if "miniplm_alt_ref" in arms:
        alt = lib.alternative_reference_model(workdir, manifest)
        if alt is None:
            skipped["miniplm_alt_ref"] = "only one reference size was trained (a given reference or architecture)"
        else:
            gpus = scoring_gpus(config.runner, config.score)
            say("score-reference-alt: started")
            scored = score_with(config.runner, config.score)(
                workdir, manifest, alt, config.score, "reference-alt", config.runner, gpus
            )
            say(f"score-reference-alt: done ({figures(scored)})")
            options = options.model_copy(update={"alt_reference_fp": alt.fingerprint})
    for arm, why in skipped.items():
        say(f"{arm} skipped: {why}")
    arms = [a for a in arms if a not in skipped]

    # 4 per alpha: Difference Sampling's selection, then every arm's data (uniform and control drawn afresh per seed)
    selections, data, train_steps = {}, {}, {}
    for alpha in experiment.alphas:
        if alpha == pipeline_config.select.alpha:  # the pipeline's own selection, made (and announced) above
            selections[alpha] = select_library(workdir, manifest, pipeline_config.select)
        else:
            selections[alpha] = step(pipeline_tasks.select, workdir, manifest, SelectConfig(alpha=alpha))
        kept = step(tasks.arm_data, workdir, manifest, "miniplm", alpha, None, selections[alpha], student, options)
        train_steps[alpha] = lib.steps_for_alpha(kept, student)
        for arm in arms:
            shared = None
            for seed in range(experiment.seeds):
                if arm == "miniplm":
                    data[(arm, alpha, seed)] = kept
                elif arm in lib.SEEDED_DATA or shared is None:
                    shared = step(tasks.arm_data, workdir, manifest, arm, alpha, seed if arm in lib.SEEDED_DATA else
                                  None, selections[alpha], student, options)  # fmt: skip
                    data[(arm, alpha, seed)] = shared
                else:
                    data[(arm, alpha, seed)] = shared

    # 5 the learning rate, tuned on the uniform arm alone and judged on held-out pool documents; every arm uses it
    tuning = None
    if experiment.learning_rates and "uniform" in arms:
        sweep = lib.plan_tuning(workdir, manifest, student, experiment, data, train_steps)
        train_runs(step, workdir, sweep, [lib.with_learning_rate(student, run.learning_rate) for run in sweep],
                       eval_set.curve_path, config.runner)  # fmt: skip
        evaluated = [step(tasks.evaluate_run, workdir, run, student, eval_set) for run in sweep]
        tuning = lib.pick_learning_rate(sweep, evaluated)
        say(f"learning rate: {tuning['learning_rate']:g} (held-out loss, uniform arm, seed 0)")
        student = lib.with_learning_rate(student, tuning["learning_rate"])

    # 6 the students: same steps, schedule, batch and sequence length on every arm (evaluated at each quarter of
    # training); then their losses per document (and, if asked, their lm-evaluation-harness scores)
    chosen = experiment.model_copy(update={"arms": arms})
    runs = lib.plan_runs(workdir, manifest, student, chosen, data, train_steps)
    say(f"{len(runs)} students to train ({experiment.seeds} seeds x {len(arms)} arms x {len(experiment.alphas)} "
        f"alphas; runs that train alike train once); steps per alpha: {train_steps}")  # fmt: skip
    train_runs(step, workdir, runs, student, eval_set.curve_path, config.runner)  # one per GPU where several
    evaluations = [step(tasks.evaluate_run, workdir, run, student, eval_set) for run in runs]
    harness = [step(tasks.harness_run, workdir, run, student, experiment) if experiment.lm_eval_tasks else {}
               for run in runs]  # fmt: skip

    # 7 the report: per arm, mean and spread over seeds, paired difference to the uniform arm, the regime, plots
    result = step(tasks.report, workdir, manifest, student, chosen, runs, evaluations, eval_set, selections, harness,
                  tuning, skipped)  # fmt: skip
    return {"pipeline": pipeline, **result, **step.report().model_dump()}
