"""The MiniPLM pipeline as a Prefect flow: corpus in, a better corpus and a trained student out.

corpus ─ ingest ─ tokenize ─ split ─┬─ train reference (D_ref) ─ precision ─┬─ score reference ─┐
teacher ────────────────────────────┴───────────────────────────────────────┴─ score teacher ───┴─ select ─ students
                                                                                                              └─ export
"""

from __future__ import annotations

import time

from prefect import flow

from flows.exclusive import exclusive
from flows.prepare import miniplm_prepare
from flows.runners import scoring_gpus
from flows.scoring import score_with
from flows.steplog import StepLog, figures, say
from miniplm.config import PipelineConfig
from miniplm.pipeline_steps import count_new_documents, previous_manifest, record_config
from miniplm.scoring.devices import machine
from miniplm.scoring.scorer import SCORER_VERSION
from miniplm.selection.run_summary import RunFigures, RunSummary
from tasks import pipeline_tasks


@flow(name="miniplm-pipeline", log_prints=True, flow_run_name="miniplm {config.workdir}")
def miniplm_pipeline(config: PipelineConfig) -> RunSummary:
    """Difference Sampling: keep the instances a large teacher finds much likelier than a small reference does."""
    with exclusive(config) as workdir:
        return _pipeline(config, workdir)


def _pipeline(config: PipelineConfig, workdir: str) -> RunSummary:
    step = StepLog()
    before = previous_manifest(workdir)
    record_config(workdir, config)  # what `miniplm status` asks each step about

    # 1-4 the data path: teacher's tokenizer, ingest, tokenize, split (see flows/prepare.py)
    prepared = miniplm_prepare(config)
    step.merge(prepared)
    gpus = scoring_gpus(config.runner, config.score)
    manifest = prepared.manifest

    # 5 the reference LM: trained on D_ref (kept until asked to retrain), or the one given; never a weak one
    reference = step(pipeline_tasks.reference, workdir, manifest, config.reference, config.instances.max_len)
    manifest = manifest.model_copy(update={"reference": reference})

    # 6 the precision both models score in, decided once per run: a reduced one that `auto` would take is first
    # measured against float32 on sampled candidates
    precision = step(pipeline_tasks.precision, workdir, manifest, config.score, gpus, machine())
    variant = f"{precision.dtype}-s{SCORER_VERSION}"
    say(f"precision: {precision.dtype} ({precision.chosen_by})")
    manifest = pipeline_tasks.manifest(workdir, manifest.model_copy(update={"score_variant": variant}))

    # 7 score the pool: partitions of what each model has not scored yet, on the configured task runner
    scoring = score_with(config.runner, config.score)
    scores = {}
    for role, model in (("teacher", manifest.teacher), ("reference", manifest.reference)):
        say(f"score-{role}: started")
        start = time.perf_counter()
        scores[role] = scoring(workdir, manifest, model, config.score, role, config.runner, gpus)
        seconds, cached = time.perf_counter() - start, scores[role].partitions == 0
        step.record(f"score-{role}", cached=cached, seconds=seconds)
        say(f"score-{role}: {'nothing new' if cached else 'done'} in {seconds:.1f} s ({figures(scores[role])})")
        if scores[role].attention_fallback:
            say(f"score-{role}: WARNING the varlen attention kernel failed and packed batches attended per instance "
                f"(exact, far slower): {scores[role].attention_fallback[:200]}")  # fmt: skip

    # 8 select in DuckDB: score DESC, instance_id ASC, keep floor(alpha * N)
    selection = step(pipeline_tasks.select, workdir, manifest, config.select)
    manifest = pipeline_tasks.manifest(workdir, manifest.model_copy(update={"selection_id": selection.selection_id}))

    # 9 students: the kept data vs a uniform sample of the same size, same compute
    students = None
    if config.student.enabled:
        students = step(pipeline_tasks.train_students, workdir, manifest, selection, config.student, config.split.seed)

    # 10 the kept corpus where a trainer reads it, when asked
    exported = step(pipeline_tasks.export, workdir, manifest, config.export) if config.export.path else None

    measured = RunFigures(
        documents_new=count_new_documents(workdir, before, manifest),
        rows_read=prepared.rows_read,
        instances_scored_teacher=scores["teacher"].instances_scored,
        instances_scored_reference=scores["reference"].instances_scored,
        teacher_tokens_per_s=scores["teacher"].tokens_per_s or None,
        score_partitions={role: s.partitions for role, s in scores.items()},
        score_workers={role: s.workers for role, s in scores.items()},
        score_precision=precision,
        score_attention={role: s.attention for role, s in scores.items()},
        score_attention_fallback=next(filter(None, (s.attention_fallback for s in scores.values())), None),
        export=exported,
        **step.report().model_dump(),
    )
    return pipeline_tasks.summary(workdir, manifest, selection, measured, students)
