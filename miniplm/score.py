"""Scores for a work directory: every candidate instance without a score from a model gets one, in Parquet shards."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from miniplm.catalog import connect, load_sql
from miniplm.config import ScoreConfig
from miniplm.hashing import stable_hash
from miniplm.progress import progress_bar
from miniplm.scorer import LMScorer, pick_device
from miniplm.shards import write_parquet
from miniplm.splits import POOL
from miniplm.workdir import Workdir

SCORE_SCHEMA = pa.schema(
    [
        ("model_fp", pa.string()),
        ("instance_id", pa.string()),
        ("n_predicted", pa.int32()),
        ("sum_logp", pa.float64()),
        ("mean_logp", pa.float64()),
    ]
)


def score_missing(
    workdir: Workdir, manifest: dict, model_path: str, model_fp: str, cfg: ScoreConfig, desc: str = "score"
) -> dict:
    """Score every candidate instance that has no score from this model yet; one Parquet shard per chunk.

    A crash loses at most the chunk in progress: finished shards are found by the anti-join next time.
    With several GPUs (or `cfg.processes` > 1) one process per device scores its own hash partition.
    """
    all_gpus = cfg.device in {"auto", "cuda"} and pick_device(cfg.device).type == "cuda"  # not a named cuda:N
    world = cfg.processes or (torch.cuda.device_count() if all_gpus else 1)
    if world <= 1:
        return _score_partition(str(workdir.root), manifest, model_path, model_fp, cfg, desc, 0, 1)
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(
            _score_rank,
            args=(world, str(workdir.root), manifest, model_path, model_fp, cfg, desc, tmp),
            nprocs=world,
            join=True,
        )
        parts = [json.loads((Path(tmp) / f"{rank}.json").read_text()) for rank in range(world)]
    summary = {
        "model_fp": model_fp,
        "instances_scored": sum(p["instances_scored"] for p in parts),
        "tokens_scored": sum(p["tokens_scored"] for p in parts),
        "shards": sum(p["shards"] for p in parts),
        "seconds": max(p["seconds"] for p in parts),
        "processes": world,
    }
    summary["tokens_per_s"] = round(summary["tokens_scored"] / summary["seconds"], 1) if summary["seconds"] else 0.0
    return summary


def _score_rank(
    rank: int,
    world: int,
    root: str,
    manifest: dict,
    model_path: str,
    model_fp: str,
    cfg: ScoreConfig,
    desc: str,
    out_dir: str,
) -> None:
    device = pick_device(cfg.device)
    if device.type == "cuda":
        cfg = cfg.model_copy(update={"device": f"cuda:{rank}"})
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    summary = _score_partition(root, manifest, model_path, model_fp, cfg, f"{desc} [{rank}/{world}]", rank, world)
    Path(out_dir, f"{rank}.json").write_text(json.dumps(summary))


def _score_partition(
    root: str, manifest: dict, model_path: str, model_fp: str, cfg: ScoreConfig, desc: str, rank: int, world: int
) -> dict:
    workdir = Workdir(Path(root))
    con = connect(workdir, manifest)
    params = {"model_fp": model_fp, "split": POOL, "rank": rank, "world_size": world}
    todo = con.execute(
        f"select count(*), coalesce(sum(len(token_ids)), 0) from ({load_sql('instances_to_score')})", params
    ).fetchall()[0]
    n_todo, tokens_todo = int(todo[0]), int(todo[1])
    summary = {
        "model_fp": model_fp,
        "instances_scored": n_todo,
        "tokens_scored": tokens_todo,
        "shards": 0,
        "seconds": 0.0,
        "tokens_per_s": 0.0,
    }
    if n_todo == 0:
        return summary
    scorer = LMScorer(model_path, device=cfg.device, dtype=cfg.dtype, batch_tokens=cfg.batch_tokens)
    reader = con.sql(load_sql("instances_to_score"), params=params).to_arrow_reader(cfg.shard_instances)
    with progress_bar(tokens_todo, desc, "tok") as bar:
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in itertools.chain(reader, [None]):
            if batch is not None:
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows < cfg.shard_instances:
                    continue
            if not pending_rows:
                break
            chunk = pa.Table.from_batches(pending)
            pending, pending_rows = [], 0
            ids = chunk.column("instance_id").to_pylist()
            sums, counts = scorer.score_all(chunk.column("token_ids").to_pylist(), bar)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = sums.astype(np.float64) / counts
            table = pa.table(
                {
                    "model_fp": [model_fp] * len(ids),
                    "instance_id": ids,
                    "n_predicted": counts.astype(np.int32),
                    "sum_logp": sums.astype(np.float64),
                    "mean_logp": means,
                },
                schema=SCORE_SCHEMA,
            )
            write_parquet(table, workdir.scores_dir(model_fp) / f"{stable_hash(ids)}.parquet")
            summary["shards"] += 1
    summary.update(
        seconds=round(scorer.stats.seconds, 3),
        tokens_per_s=round(scorer.stats.tokens_per_s, 1),
        device=str(scorer.device),
        dtype=str(scorer.dtype).removeprefix("torch."),
    )
    return summary
