"""Work directories and configurations that tests of several stages build on: a scored work directory from given
log-probs, the same with real tokens and no scores, a corpus prepared by the library alone, a pipeline config for
the tiny models."""

import shutil

import numpy as np
import pyarrow as pa

from miniplm import pipeline_steps
from miniplm.config import (
    CorpusConfig,
    InstanceConfig,
    PipelineConfig,
    ReferenceConfig,
    SplitConfig,
    StudentConfig,
    TrainConfig,
)
from miniplm.data.instances import instance_spec
from miniplm.data.splits import split_key
from miniplm.store import schemas
from miniplm.store.manifest import ModelRef, RunManifest, SourceRef
from miniplm.store.shards import write_parquet
from miniplm.store.workdir import Workdir
from tests.tiny import corpus_texts, write_jsonl

SPEC, SOURCE = "spec0", "source0"


VARIANT = "float32-s3"


def build_scored_workdir(
    tmp_path,
    teacher: list[float],
    reference: list[float],
    splits: list[str],
    sources: list[str] | None = None,
    files: list[str] | None = None,
) -> tuple:
    """A work directory with one instance per document and the given mean log-probs: the documents in one input
    (SOURCE), or in one input per source name given (in order of first appearance), each document's file named by
    `files` (default: its input's name)."""
    wd = Workdir.create(tmp_path / "wd")
    n = len(teacher)
    ids = [f"{i:04d}" for i in range(n)]
    docs = [f"d{i:04d}" for i in range(n)]
    names = sources or ["s"] * n
    files = files or names
    split_cfg = SplitConfig()
    key = split_key(split_cfg)
    inputs = {name: (SOURCE if sources is None else f"key-{name}") for name in dict.fromkeys(names)}
    for name, source_key in inputs.items():
        rows = [i for i in range(n) if names[i] == name]

        def column(values: list, rows: list[int] = rows) -> list:
            return [values[i] for i in rows]

        documents = {
            "doc_id": column(docs),
            "text": [f"text {i}" for i in rows],
            "source": column(files),
            "row": rows,
            "n_chars": [6] * len(rows),
            "truncated": [False] * len(rows),
        }
        write_parquet(pa.table(documents, schema=schemas.DOCUMENT), wd.documents(source_key, 0))
        instances = {
            "instance_id": column(ids),
            "doc_id": column(docs),
            "chunk_index": [0] * len(rows),
            "n_tokens": [10 + i % 7 for i in rows],
            "token_ids": [[1, 2]] * len(rows),
        }
        write_parquet(pa.table(instances, schema=schemas.INSTANCE), wd.instances(SPEC, source_key, 0))
        split_table = pa.table({"doc_id": column(docs), "split": column(splits)}, schema=schemas.SPLIT)
        write_parquet(split_table, wd.splits(key, source_key, 0))
        for fp, values in (("T", teacher), ("R", reference)):
            mine = column(values)
            scores = {
                "instance_id": column(ids),
                "n_predicted": [9] * len(rows),
                "sum_logp": [v * 9 for v in mine],
                "mean_logp": mine,
            }
            write_parquet(
                pa.table(scores, schema=schemas.SCORE),
                wd.partition_scores_dir(fp, VARIANT, source_key, 0) / "a.parquet",
            )
    manifest = RunManifest(
        sources=[SourceRef(spec=name, source_key=k, parts=1) for name, k in inputs.items()],
        instance_spec=SPEC,
        split=split_cfg,
        split_key=key,
        teacher=ModelRef(spec="t", path="t", fingerprint="T"),
        reference=ModelRef(spec="r", path="r", fingerprint="R"),
        score_variant=VARIANT,
    )
    return wd, manifest, ids


def scoring_workdir(tmp_path, models, n: int = 40):
    """build_scored_workdir's layout with real tokens, and no scores yet."""
    wd, manifest, ids = build_scored_workdir(tmp_path, [-1.0] * n, [-2.0] * n, ["pool"] * n)
    shutil.rmtree(wd.root / "scores")
    rng = np.random.default_rng(5)
    tokens = [rng.integers(0, 300, size=int(k)).tolist() for k in rng.integers(2, 60, size=n)]
    table = {
        "instance_id": ids,
        "doc_id": [f"d{i:04d}" for i in range(n)],
        "chunk_index": [0] * n,
        "n_tokens": [len(t) for t in tokens],
        "token_ids": tokens,
    }
    write_parquet(pa.table(table, schema=schemas.INSTANCE), wd.instances(SPEC, SOURCE, 0))
    return wd, manifest, ids, tokens


def prepared_workdir(tmp_path, models, shard_documents: int) -> tuple[Workdir, RunManifest]:
    """Two sources ingested, tokenized and split with the library alone, in shards of `shard_documents`."""
    wd = Workdir.create(tmp_path / f"wd-{shard_documents}")
    texts = corpus_texts(120, seed=2)
    paths = [write_jsonl(tmp_path / "a.jsonl", texts[:80]), write_jsonl(tmp_path / "b.jsonl", texts[70:])]
    cfg = CorpusConfig(paths=[str(p) for p in paths], shard_documents=shard_documents)
    sources = pipeline_steps.plan_sources(cfg)
    sources = [
        s.model_copy(update={"parts": pipeline_steps.ingest_source(str(wd.root), s, cfg).parts}) for s in sources
    ]
    tok = str(models["teacher"])
    spec = instance_spec(tok, 40)
    pipeline_steps.tokenize_sources(str(wd.root), sources, tok, 40, spec)
    split = SplitConfig(reference_fraction=0.1, heldout_fraction=0.1)
    pipeline_steps.split_sources(str(wd.root), sources, split, split_key(split))
    teacher = ModelRef(spec="t", path=tok, fingerprint="T")
    manifest = RunManifest(
        sources=sources, instance_spec=spec, split=split, split_key=split_key(split), teacher=teacher
    )
    return wd, manifest


def pipeline_config(tmp_path, models, paths, **overrides) -> PipelineConfig:
    base = dict(
        workdir=str(tmp_path / "wd"),
        corpus=CorpusConfig(paths=[str(p) for p in paths]),
        teacher=str(models["teacher"]),
        instances=InstanceConfig(max_len=48),
        split=SplitConfig(reference_fraction=0.2, heldout_fraction=0.1),
        # tiny corpora make weak references; the reference gate has its own tests (test_reference.py)
        reference=ReferenceConfig(train=TrainConfig(max_steps=15, batch_size=4, eval_interval=5), accept_weak=True),
        student=StudentConfig(train=TrainConfig(max_steps=10, batch_size=4, block_size=32, eval_interval=5)),
    )
    return PipelineConfig(**(base | overrides))
