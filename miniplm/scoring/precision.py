"""The scoring precision a run uses, and what a reduced one costs in accuracy, measured rather than assumed.

`score.dtype: auto` on a CPU takes bfloat16 where it multiplies clearly faster. bfloat16 moves mean log-probs by
amounts that differ from machine to machine (1e-2 nats/token on one, 7e-2 on another), so before a run scores in a
reduced precision it measures the cost on a sample of its own candidates: both models in float32 and in the reduced
dtype, the score of each instance both ways, the largest and the median difference, how many sampled instances lie
so near the middle of the scores that such a difference could move them across an alpha = 0.5 threshold, and the
speedup. The figures are kept per machine, models and dtype (in the model cache, beside the batch sizes), so the
measurement runs once. A largest difference above `score.max_drift` makes `auto` fall back to float32, and says so.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from miniplm.config import ScoreConfig
from miniplm.scoring.devices import dtype_name, machine, pick_device, pick_dtype
from miniplm.scoring.precision_record import DriftMeasure, PrecisionDecision
from miniplm.store.catalog import connect, load_sql
from miniplm.store.manifest import RunManifest
from miniplm.store.shards import read_json, write_json
from miniplm.store.workdir import Workdir

SAMPLE_INSTANCES = 16
SAMPLE_TOKENS = 4096


def _cache_file() -> Path:
    from miniplm.store.hashing import cache_root

    return cache_root() / "precision.json"


def sample_candidates(workdir: Workdir, manifest: RunManifest) -> list[list[int]]:
    """A seeded sample of the pool's candidates, up to SAMPLE_INSTANCES instances and about SAMPLE_TOKENS tokens."""
    con = connect(workdir, manifest)
    params = {"instances": SAMPLE_INSTANCES, "tokens": SAMPLE_TOKENS}
    return [list(r[0]) for r in con.sql(load_sql("precision_sample"), params=params).fetchall()]


def measure_drift(teacher: str, reference: str, instances: list[list[int]], reduced: torch.dtype) -> DriftMeasure:
    """Scores of `instances` (teacher minus reference mean log-prob) in float32 and in `reduced`, compared."""
    from miniplm.scoring.scorer import LMScorer

    means, rates = {}, {}
    for dtype in (torch.float32, reduced):
        per_model = []
        for path in (teacher, reference):
            scorer = LMScorer(path, device="cpu", dtype=dtype_name(dtype))
            sums, counts = scorer.score_all(instances)
            per_model.append(sums / counts.clip(min=1))
            if path == teacher:
                rates[dtype] = scorer.stats.tokens_per_s
        means[dtype] = per_model[0] - per_model[1]
    drift = abs(means[torch.float32] - means[reduced])
    middle = statistics.median(means[torch.float32].tolist())
    largest = float(drift.max())
    return DriftMeasure(
        dtype=dtype_name(reduced),
        instances=len(instances),
        tokens=int(sum(len(i) for i in instances)),
        max_drift=largest,
        median_drift=float(statistics.median(drift.tolist())),
        near_threshold=int(sum(abs(s - middle) <= largest for s in means[torch.float32].tolist())),
        speedup=rates[reduced] / rates[torch.float32] if rates[torch.float32] else None,
    )


def remembered_drift(teacher_fp: str, reference_fp: str, reduced: torch.dtype, measure) -> DriftMeasure:
    key = json.dumps([machine(), teacher_fp, reference_fp, dtype_name(reduced)])
    path = _cache_file()
    known = read_json(path) if path.exists() else {}
    if key not in known:
        value = measure()
        known = read_json(path) if path.exists() else {}
        known[key] = value.model_dump()
        write_json(known, path)
    return DriftMeasure.model_validate(known[key])


def decide_precision(workdir: str, manifest: RunManifest, cfg: ScoreConfig, gpus: bool,
                     reduced: torch.dtype | None = None) -> PrecisionDecision:  # fmt: skip
    """The dtype this run scores in, with what it was decided from. `reduced` is the precision `auto` would take
    (measured on this CPU when not given)."""
    from miniplm.scoring.partitions import score_variant

    on_gpu = gpus or pick_device(cfg.device).type == "cuda"
    if cfg.dtype != "auto" or on_gpu:
        dtype = score_variant(cfg, gpus).split("-s", 1)[0]
        why = "as configured" if cfg.dtype != "auto" else "bfloat16 on GPUs"
        return PrecisionDecision(dtype=dtype, chosen_by=why, max_drift_bound=cfg.max_drift)
    reduced = reduced or pick_dtype(torch.device("cpu"), "auto")
    if reduced == torch.float32:
        return PrecisionDecision(dtype="float32", chosen_by="float32 is the fastest on this CPU",
                                 max_drift_bound=cfg.max_drift)  # fmt: skip
    wd = Workdir.open(workdir)
    instances = sample_candidates(wd, manifest)
    if not instances:
        return PrecisionDecision(dtype=dtype_name(reduced), chosen_by="faster on this CPU (nothing to measure on)",
                                 max_drift_bound=cfg.max_drift)  # fmt: skip
    teacher, reference = manifest.teacher, manifest.reference
    measured = remembered_drift(
        teacher.fingerprint,
        reference.fingerprint,
        reduced,
        lambda: measure_drift(teacher.path, reference.path, instances, reduced),
    )
    if measured.max_drift > cfg.max_drift:
        return PrecisionDecision(
            dtype="float32",
            chosen_by=f"{measured.dtype} moved scores by up to {measured.max_drift:.3f} nats/token on "
            f"{measured.instances} sampled candidates, more than score.max_drift {cfg.max_drift}: float32 instead",
            fell_back=True,
            measured=measured,
            max_drift_bound=cfg.max_drift,
        )
    return PrecisionDecision(
        dtype=measured.dtype,
        chosen_by=f"{measured.speedup:.2f}x faster on this CPU, scores within {measured.max_drift:.3f} "
        f"nats/token of float32 (bound {cfg.max_drift})",
        fell_back=False,
        measured=measured,
        max_drift_bound=cfg.max_drift,
    )
