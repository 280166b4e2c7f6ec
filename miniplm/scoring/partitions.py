"""Scoring as a map over partitions: plan which candidates each partition scores, then score one partition.

A partition is one instance shard's candidates that a model has not scored yet, or a hash bucket of them, sized
to minutes of work on the device at hand. Each loads the model once, reads its one shard, and saves what it has
scored every `checkpoint_seconds` as a new immutable shard in its own scores folder: a process killed at any
moment loses at most one interval, and the rerun skips what was saved (never scoring it twice) and misses nothing.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel

from miniplm.config import ScoreConfig
from miniplm.progress import progress_bar
from miniplm.scoring import varlen
from miniplm.scoring.batches import Ragged
from miniplm.scoring.devices import dtype_name, lease_device, matmul_rate, pick_device, pick_dtype
from miniplm.scoring.scorer import SCORER_VERSION, LMScorer, ScoreStats
from miniplm.store import schemas
from miniplm.store.catalog import NONE, connect, ensure_anchors, load_sql
from miniplm.store.manifest import ModelRef, RunManifest
from miniplm.store.shards import read_json, remove_temporaries, write_json, write_parquet
from miniplm.store.workdir import Workdir

# Assumed sustained rate of a GPU scorer when sizing partitions for GPUs the planning machine cannot see.
GPU_FLOPS_ASSUMED = 100e12
MIN_PARTITION_TOKENS = 4096


class Partition(BaseModel):
    """One unit of scoring work: a model, and the planned candidates of one instance shard's bucket."""

    model_fp: str
    variant: str
    source_key: str
    part: int
    bucket: int
    plan: str  # folder of the plan's Parquet file(s) for this partition
    instances: int
    tokens: int

    @property
    def name(self) -> str:
        return f"{self.source_key[:8]}/{self.part}/{self.bucket}"


def score_variant(cfg: ScoreConfig, gpus: bool) -> str:
    """What a score depends on besides the model and the instance: the dtype and the scorer's version.

    Decided once per run (a CPU's `auto` dtype is measured here), so one model's scores never mix dtypes. `gpus`
    says whether scoring runs on GPUs, which the machine that plans may not have itself.
    """
    if cfg.dtype != "auto":
        dtype = pick_dtype(torch.device("cpu"), cfg.dtype)
    elif gpus or pick_device(cfg.device).type == "cuda":
        dtype = torch.bfloat16
    else:
        dtype = pick_dtype(torch.device("cpu"), "auto")
    return f"{dtype_name(dtype)}-s{SCORER_VERSION}"


def variant_dtype(variant: str) -> str:
    return variant.split("-s", 1)[0]


def model_parameters(model_path: str) -> int:
    """Parameter count from the config alone (the model is built on the meta device: no memory, no weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    return sum(p.numel() for p in model.parameters())


def partition_tokens(
    cfg: ScoreConfig, model_path: str, variant: str, gpus: bool, measured: float | None = None
) -> int:
    """Tokens per partition: `partition_minutes` of work at the rate scoring reached with this model on these
    devices before (`measured`), else at the rate it should reach (half the measured matmul peak of a CPU or of a
    GPU this machine has; an assumed sustained rate for GPUs it cannot see), unless set outright."""
    if cfg.partition_tokens:
        return cfg.partition_tokens
    on_gpus = gpus or pick_device(cfg.device).type == "cuda"
    if measured:
        tokens_per_s = measured
    else:
        if on_gpus and torch.cuda.is_available():
            flops = 0.5 * matmul_rate(torch.bfloat16, device=torch.device("cuda"))
        elif on_gpus:
            flops = GPU_FLOPS_ASSUMED
        else:
            flops = 0.5 * matmul_rate(pick_dtype(torch.device("cpu"), variant_dtype(variant)))
        tokens_per_s = flops / (2 * model_parameters(model_path))
    return max(MIN_PARTITION_TOKENS, int(cfg.partition_minutes * 60 * tokens_per_s))


def rates_dir(workdir: Workdir, model_fp: str, variant: str) -> Path:
    return workdir.scores_dir(model_fp, variant) / "rates"


def measured_rate(workdir: Workdir, model_fp: str, variant: str, gpus: bool) -> float | None:
    """Tokens per second one scoring task reached with this model and variant, over every partition scored on the
    same kind of device (GPU or CPU) so far, or None before any."""
    kind = "cuda" if gpus else "cpu"
    runs = [read_json(p) for p in rates_dir(workdir, model_fp, variant).glob("*.json")]
    runs = [r for r in runs if r["device_type"] == kind and r["seconds"] > 0]
    seconds = sum(r["seconds"] for r in runs)
    return sum(r["tokens"] for r in runs) / seconds if seconds else None


def plan_partitions(
    workdir: Workdir, manifest: RunManifest, model: ModelRef, variant: str, tokens_per_partition: int
) -> list[Partition]:
    """Write this run's scoring plan for `model` (replacing an older one) and list its partitions."""
    # Temporary files a killed writer left: cleared now, before any partition of this pass writes. (A partition
    # clearing them as it starts would delete the shard another partition of the same instances shard, scored at
    # the same time on another GPU, is about to rename into place.)
    for folder in workdir.scores_dir(model.fingerprint, variant).glob("source_key=*/part=*"):
        remove_temporaries(folder)
    plans = workdir.plans_dir(model.fingerprint, variant)
    shutil.rmtree(plans, ignore_errors=True)
    plan_root = plans / uuid.uuid4().hex[:12]
    con = connect(workdir, manifest)
    params = {"model_fp": model.fingerprint, "variant": variant, "partition_tokens": tokens_per_partition}
    plan_root.parent.mkdir(parents=True, exist_ok=True)
    plan = con.sql(load_sql("plan_partitions"), params=params)
    plan.write_parquet(str(plan_root), partition_by=["source_key", "part", "bucket"])  # one folder per partition
    if not any(plan_root.rglob("*.parquet")):
        return []
    rows = con.sql(load_sql("partitions_of_plan"), params={"plan_files": f"{plan_root}/*/*/*/*.parquet"}).fetchall()
    return [
        Partition(
            model_fp=model.fingerprint,
            variant=variant,
            source_key=source_key,
            part=part,
            bucket=bucket,
            plan=str(plan_root / f"source_key={source_key}" / f"part={part}" / f"bucket={bucket}"),
            instances=instances,
            tokens=int(tokens),
        )
        for source_key, part, bucket, instances, tokens in rows
    ]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU threads for a while (a scoring task's share of a node), then as they were."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_loaded: dict[str, tuple[tuple, LMScorer]] = {}  # device -> (what was loaded, its scorer)
_loading = threading.Lock()


def loaded_scorer(model: ModelRef, device: str, dtype: str, batch_tokens: int | None) -> LMScorer:
    """A scorer with its model loaded, kept per device for the life of this process: a Ray worker or a local run
    loads a model once for all the partitions it scores, not once per partition. Another model on the same device
    replaces it (one model per device at a time); its figures start afresh for each partition."""
    key = (model.fingerprint, model.path, dtype, batch_tokens)
    with _loading:
        held = _loaded.get(device)
        if held is None or held[0] != key:
            _loaded.pop(device, None)  # drop the previous model before the next one loads
            _loaded[device] = (key, LMScorer(model.path, device=device, dtype=dtype, batch_tokens=batch_tokens))
        scorer = _loaded[device][1]
    scorer.stats = ScoreStats()
    _ = scorer.model  # loaded before the clock starts: an interval measures scoring only
    return scorer


def _saved_files(out_dir: Path, workdir: Workdir) -> list[str]:
    anchor = workdir.partition_scores_dir(NONE, NONE, NONE, 0) / "empty.parquet"
    return [str(anchor)] + sorted(str(p) for p in out_dir.glob("*.parquet"))


class PartitionScored(BaseModel):
    """What scoring one partition did: instances and tokens scored, saves, time, and where and how it ran."""

    partition: str
    instances_scored: int
    tokens_scored: int = 0
    checkpoints: int = 0
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    device: str | None = None
    dtype: str | None = None
    attention: str | None = None
    attention_fallback: str | None = None
    oom_retries: int = 0
    worker: str | None = None  # (the task says where it ran: a host and GPU, or a Ray node)


class ScoringFigures(BaseModel):
    """One model's scoring, its partitions' figures together."""

    model_fp: str
    partitions: int
    instances_scored: int
    tokens_scored: int
    checkpoints: int
    workers: list[str]
    seconds: float
    tokens_per_s: float
    attention: list[str]
    attention_fallback: str | None
    oom_retries: int


def score_partition(
    workdir: Workdir, manifest: RunManifest, model: ModelRef, partition: Partition, cfg: ScoreConfig
) -> PartitionScored:
    """Score the partition's planned candidates that are not saved yet, checkpointing every `checkpoint_seconds`."""
    ensure_anchors(workdir)
    out_dir = workdir.partition_scores_dir(model.fingerprint, partition.variant, partition.source_key, partition.part)
    shard = workdir.instances(manifest.instance_spec, partition.source_key, partition.part)
    params = {"plan": f"{partition.plan}/*.parquet", "saved": _saved_files(out_dir, workdir), "shard": str(shard)}
    todo = duckdb.connect().sql(load_sql("partition_todo"), params=params).to_arrow_table()
    checkpoints = 0
    if todo.num_rows == 0:
        return PartitionScored(partition=partition.name, instances_scored=0)
    ids = np.asarray(todo.column("instance_id").to_pylist(), dtype=object)
    tokens = Ragged.from_arrow(todo.column("token_ids"))
    with lease_device(cfg.device) as device, torch_threads(cfg.threads):
        scorer = loaded_scorer(model, device, variant_dtype(partition.variant), cfg.batch_tokens)

        def save(indices: list[np.ndarray], sums: list[torch.Tensor]) -> None:
            nonlocal checkpoints
            idx = np.concatenate(indices)
            total = torch.cat(sums).cpu().numpy()
            counts = np.maximum(tokens.lengths[idx] - 1, 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = total / counts
            table = pa.table(
                {"instance_id": ids[idx].tolist(), "n_predicted": counts, "sum_logp": total, "mean_logp": means},
                schema=schemas.SCORE,
            )
            write_parquet(table, out_dir / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet")
            checkpoints += 1

        pending_idx: list[np.ndarray] = []
        pending_sums: list[torch.Tensor] = []
        last_save = time.monotonic()
        desc = f"score {partition.name} ({model.spec})"
        with progress_bar(int(tokens.offsets[-1]), desc, "tok") as bar:
            for idx, sums in scorer.score(tokens, bar):
                pending_idx.append(idx)
                pending_sums.append(sums)
                if time.monotonic() - last_save >= cfg.checkpoint_seconds:
                    save(pending_idx, pending_sums)
                    pending_idx, pending_sums, last_save = [], [], time.monotonic()
            if pending_idx:
                save(pending_idx, pending_sums)
    if scorer.stats.seconds > 0:  # what the next plan sizes its partitions by
        rate = {"tokens": scorer.stats.tokens, "seconds": scorer.stats.seconds, "device_type": scorer.device.type}
        write_json(rate, rates_dir(workdir, model.fingerprint, partition.variant) / f"{uuid.uuid4().hex[:12]}.json")
    return PartitionScored(
        partition=partition.name,
        instances_scored=todo.num_rows,
        tokens_scored=scorer.stats.tokens,
        checkpoints=checkpoints,
        seconds=round(scorer.stats.seconds, 3),
        tokens_per_s=round(scorer.stats.tokens_per_s, 1),
        device=str(scorer.device),
        dtype=dtype_name(scorer.dtype),
        attention=scorer.attention,
        attention_fallback=varlen.kernel_fallback(),
        oom_retries=scorer.stats.oom_retries,
    )


def merge_summaries(model: ModelRef, results: list[PartitionScored], partitions: int) -> ScoringFigures:
    """One model's scoring figures from its partitions' (partitions run in parallel, so seconds add up as work)."""
    tokens = sum(r.tokens_scored for r in results)
    seconds = sum(r.seconds for r in results)
    return ScoringFigures(
        model_fp=model.fingerprint,
        partitions=partitions,
        instances_scored=sum(r.instances_scored for r in results),
        tokens_scored=tokens,
        checkpoints=sum(r.checkpoints for r in results),
        workers=sorted({r.worker for r in results if r.worker}),
        seconds=round(seconds, 3),
        tokens_per_s=round(tokens / seconds, 1) if seconds else 0.0,
        attention=sorted({r.attention for r in results if r.attention}),
        attention_fallback=next((r.attention_fallback for r in results if r.attention_fallback), None),
        oom_retries=sum(r.oom_retries for r in results),
    )
