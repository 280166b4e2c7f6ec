"""The MiniPLM pipeline as a Prefect flow: corpus in, a better corpus and a trained student out.

corpus ─ ingest ─ tokenize ─ split ─┬─ train reference (D_ref) ─ score reference ─┐
teacher ────────────────────────────┴─ score teacher ─────────────────────────────┴─ select ─ students
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from miniplm.config import PipelineConfig
from miniplm.models import DEMO_TEACHER
from miniplm.pipeline import count_new_documents, effective_split_for, plan_sources, previous_manifest
from miniplm.workdir import Workdir
from tasks import steps


class StepLog:
    """Runs tasks and remembers which ones were answered from the cache."""

    def __init__(self) -> None:
        self.cached: list[str] = []
        self.ran: list[str] = []

    def __call__(self, task, *args: Any, **kwargs: Any) -> Any:
        state: State = task(*args, return_state=True, **kwargs)
        label = task.name if "role" not in kwargs else f"{task.name}-{kwargs['role']}"
        (self.cached if state.name == "Cached" else self.ran).append(label)
        return state.result()


@flow(name="miniplm-pipeline", log_prints=True, flow_run_name="miniplm {config.workdir}")
def miniplm_pipeline(config: PipelineConfig) -> dict:
    """Difference Sampling: keep the instances a large teacher finds much likelier than a small reference does."""
    step = StepLog()
    workdir = str(Workdir.create(config.workdir).root)
    before = previous_manifest(workdir)

    # 1 the teacher: a hub id, a local checkpoint, a GGUF file, or the embedded demo model
    spec = step(steps.fetch_demo_teacher) if config.teacher == DEMO_TEACHER else config.teacher
    teacher = {**step(steps.resolve, spec), "spec": config.teacher}

    # 2 read the corpus: documents with content ids; bad rows quarantined with a reason
    sources = plan_sources(config)
    ingested = [step(steps.ingest, workdir, s["spec"], config.corpus.text_column, s["source_key"]) for s in sources]

    # 3 instances in the teacher's tokenizer, never spanning two documents
    instance_spec = steps.instance_spec(teacher["path"], config.instances.max_len)
    for s in sources:
        step(steps.tokenize, workdir, s["source_key"], teacher["path"], config.instances.max_len, instance_spec)

    # 4 D_ref / held-out / pool, by a seeded hash of each doc_id
    split_cfg = effective_split_for(config)
    for s in sources:
        step(steps.split, workdir, s["source_key"], split_cfg)
    manifest = steps.manifest(workdir, sources, instance_spec, split_cfg, teacher)

    # 5 the reference LM: trained on D_ref (kept until asked to retrain), or the one given
    reference = step(steps.reference, workdir, manifest, config.reference, config.instances.max_len)

    # 6 score the pool: only instances a model has not scored yet
    teacher_scores = step(steps.score, workdir, manifest, teacher, config.score, role="teacher")
    manifest = steps.manifest(workdir, sources, instance_spec, split_cfg, teacher, reference)
    reference_scores = step(steps.score, workdir, manifest, reference, config.score, role="reference")

    # 7 select in DuckDB: score DESC, instance_id ASC, keep floor(alpha * N)
    selection = step(steps.select, workdir, manifest, config.select)
    manifest = steps.manifest(workdir, sources, instance_spec, split_cfg, teacher, reference, selection["selection_id"])

    # 8 students: the kept data vs a uniform sample of the same size, same compute
    students = None
    if config.student.enabled:
        students = step(steps.train_students, workdir, manifest, selection, config.student, config.split.seed)

    counts = {
        "documents_new": count_new_documents(workdir, before, manifest),
        "rows_read": sum(s["rows_read"] for s in ingested),
        # instances scored by this run: a step answered from the cache scored nothing
        "instances_scored_teacher": 0 if "score-teacher" in step.cached else teacher_scores["instances_scored"],
        "instances_scored_reference": 0 if "score-reference" in step.cached else reference_scores["instances_scored"],
        "teacher_tokens_per_s": None if "score-teacher" in step.cached else teacher_scores["tokens_per_s"],
        "steps_cached": step.cached,
        "steps_run": step.ran,
    }
    return steps.summary(workdir, manifest, selection, counts, students)
