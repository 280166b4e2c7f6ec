"""A scoring task killed at any moment loses at most one checkpoint interval, and its rerun ends identical."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from miniplm.config import ScoreConfig
from miniplm.scoring.partitions import plan_partitions, score_partition
from miniplm.store.manifest import ModelRef
from tests.tiny import make_lm
from tests.workdirs import scoring_workdir

INTERVAL = 1.0

WORKER = """
import json, sys
from miniplm.config import ScoreConfig
from miniplm.store.manifest import ModelRef, RunManifest
from miniplm.scoring.partitions import Partition, score_partition
from miniplm.store.workdir import Workdir
args = json.loads(sys.argv[1])
score_partition(Workdir.open(args["workdir"]), RunManifest.model_validate(args["manifest"]),
                ModelRef.model_validate(args["model"]), Partition.model_validate(args["partition"]),
                ScoreConfig.model_validate(args["cfg"]))
"""


def saved(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)


def scores_of(files: list[Path]) -> dict[str, float]:
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    ids = [r["instance_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an instance was saved twice"
    return {r["instance_id"]: r["sum_logp"] for r in rows}


def test_killed_scoring_resumes_after_its_last_checkpoint(tmp_path, models):
    # a model slow enough for several checkpoints, small batches so that each is quick
    slow = make_lm(tmp_path / "slow", models["tokenizer"], seed=4, hidden=256, layers=4)
    cfg = ScoreConfig(device="cpu", dtype="float32", batch_tokens=256, checkpoint_seconds=INTERVAL, threads=1)
    runs = {}
    for name in ("killed", "straight"):
        wd, manifest, ids, _ = scoring_workdir(tmp_path / name, models, n=1500)
        model = ModelRef(spec="slow", path=str(slow), fingerprint="S")
        (partition,) = plan_partitions(wd, manifest, model, manifest.score_variant, 1 << 30)
        out_dir = wd.partition_scores_dir("S", partition.variant, partition.source_key, partition.part)
        runs[name] = (wd, manifest, model, partition, out_dir, ids)

    straight = score_partition(*runs["straight"][:4], cfg)
    expected = scores_of(saved(runs["straight"][4]))
    assert straight.checkpoints >= 4, "the scoring must span several intervals for this test to mean anything"

    wd, manifest, model, partition, out_dir, ids = runs["killed"]
    args = {
        "workdir": str(wd.root),
        "manifest": manifest.model_dump(mode="json"),
        "model": model.model_dump(),
        "partition": partition.model_dump(),
        "cfg": cfg.model_dump(),
    }
    worker = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(args)], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 300
        while len(saved(out_dir)) < 2:
            assert worker.poll() is None and time.monotonic() < deadline, "the worker ended before two checkpoints"
            time.sleep(0.05)
        time.sleep(float(np.random.default_rng().uniform(0.2, 0.9)) * INTERVAL)  # somewhere inside an interval
        os.kill(worker.pid, signal.SIGKILL)
        killed_at = time.time()
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    before = saved(out_dir)
    saved_before = scores_of(before)
    assert 0 < len(saved_before) < len(ids)
    # at most one interval of work unsaved: the last checkpoint is less than an interval (and a batch) old
    assert killed_at - before[-1].stat().st_mtime < INTERVAL + 0.5
    # the rerun scores exactly what was not saved, and the result is the uninterrupted run's
    rerun = score_partition(wd, manifest, model, partition, cfg)
    assert rerun.instances_scored == len(ids) - len(saved_before)
    final = scores_of(saved(out_dir))
    assert final.keys() == expected.keys() == set(ids)
    assert max(abs(final[i] - expected[i]) for i in ids) < 1e-5
