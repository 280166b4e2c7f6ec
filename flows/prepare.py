"""The data path alone, as a Prefect flow: corpus in, documents, instances and splits out, on CPU nodes.

corpus ─ ingest ─ tokenize (teacher's tokenizer) ─ split

`miniplm prepare` runs it so a corpus can be prepared where the CPUs are and scored later where the GPUs are;
`miniplm run` (the pipeline flow) runs it first and finds done what is done.
"""

from __future__ import annotations

from prefect import flow

from flows.exclusive import exclusive
from flows.steplog import StepLog
from miniplm.config import PipelineConfig
from miniplm.data.splits import resolve_split, split_config, split_key
from miniplm.pipeline_steps import plan_sources, previous_manifest, require_documents
from miniplm.selection.run_summary import StepsTaken
from miniplm.store.manifest import RunManifest
from miniplm.store.models import DEMO_TEACHER
from tasks import pipeline_tasks


class Prepared(StepsTaken):
    """The corpus as prepared: the run's manifest so far, and the rows read to make it."""

    manifest: RunManifest
    rows_read: int


@flow(name="miniplm-prepare", log_prints=True, flow_run_name="prepare {config.workdir}")
def miniplm_prepare(config: PipelineConfig) -> Prepared:
    """Ingest, tokenize and split the corpus; publish the views over it. Returns the run's manifest so far."""
    with exclusive(config) as workdir:
        return _prepare(config, workdir)


def _prepare(config: PipelineConfig, workdir: str) -> Prepared:
    step = StepLog()

    # 1 the teacher's tokenizer: a hub id, a local checkpoint, a GGUF file, or the embedded demo model
    spec = step(pipeline_tasks.fetch_demo_teacher) if config.teacher == DEMO_TEACHER else config.teacher
    teacher = step(pipeline_tasks.resolve, spec, config.teacher)

    # 2 read the corpus, streaming: documents with content ids, in shards; bad rows quarantined with a reason
    sources = plan_sources(config.corpus)
    ingested = [step(pipeline_tasks.ingest, workdir, s, config.corpus) for s in sources]
    sources = [s.model_copy(update={"parts": stats.parts}) for s, stats in zip(sources, ingested, strict=True)]

    # 3 instances in the teacher's tokenizer, never spanning two documents
    instance_spec = pipeline_tasks.instance_spec(teacher.path, config.instances.max_len)
    tokenized = step(pipeline_tasks.tokenize, workdir, sources, teacher.path, config.instances.max_len, instance_spec)

    # 4 D_ref / held-out / pool, by a seeded hash of each doc_id (D_ref's share, when not given, chosen once)
    previous = previous_manifest(workdir)
    split = resolve_split(split_config(config), tokenized.tokens, previous.split if previous else None)
    key = split_key(split)
    step(pipeline_tasks.split, workdir, sources, split, key)

    manifest = pipeline_tasks.manifest(
        workdir, RunManifest(sources=sources, instance_spec=instance_spec, split=split, split_key=key, teacher=teacher)
    )
    require_documents(ingested)  # after the views are published, so the quarantine can be inspected
    rows_read = sum(s.rows_read for s in ingested)
    return Prepared(manifest=manifest, rows_read=rows_read, **step.report().model_dump())
