"""A Ray fan-out of many small scoring partitions at once, reporting to a Prefect server of its own (its state in
SQLite, or in PostgreSQL): what `tests/flows/test_ray_slow.py` checks and `bench/fanout_database.py` times."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from miniplm.config import (
    CorpusConfig,
    InstanceConfig,
    PipelineConfig,
    ReferenceConfig,
    RunnerConfig,
    ScoreConfig,
    SplitConfig,
    StudentConfig,
    TrainConfig,
)
from tests.prefect_server import ROOT, prefect_server
from tests.tiny import corpus_texts, write_jsonl

LOCKED = "database is locked"


def fanout_config(folder: Path, teacher: Path, address: str, documents: int, cpus_per_task: float) -> PipelineConfig:
    """Small partitions (96 tokens) of a tiny teacher's scoring, `1 / cpus_per_task` tasks per Ray CPU at once."""
    corpus = write_jsonl(folder / "corpus.jsonl", corpus_texts(documents, seed=11))
    return PipelineConfig(
        workdir=str(folder / "work"),
        corpus=CorpusConfig(paths=[str(corpus)]),
        teacher=str(teacher),
        instances=InstanceConfig(max_len=48),
        split=SplitConfig(reference_fraction=0.2, heldout_fraction=0.05),
        reference=ReferenceConfig(train=TrainConfig(max_steps=15, batch_size=4), accept_weak=True),
        score=ScoreConfig(device="cpu", dtype="float32", threads=1, partition_tokens=96),
        student=StudentConfig(enabled=False),
        runner=RunnerConfig(kind="ray", address=address, cpus_per_task=cpus_per_task),
    )


def task_runs(api: str, name_prefix: str) -> list[dict]:
    """Every task run whose name starts with `name_prefix`, page by page, from the Prefect API."""
    runs: list[dict] = []
    while True:
        body = {"task_runs": {"name": {"like_": name_prefix}}, "limit": 200, "offset": len(runs)}
        request = urllib.request.Request(f"{api}/task_runs/filter", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})  # fmt: skip
        page = json.loads(urllib.request.urlopen(request, timeout=30).read())
        runs += page
        if len(page) < 200:
            return [r for r in runs if r["name"].startswith(name_prefix)]


def run_fanout(folder: Path, cfg: PipelineConfig, ray_temp_dir: str, database_url: str | None) -> dict:
    """`miniplm run` of `cfg` against a fresh Prefect server; what it printed, the scoring task runs the server
    holds, the seconds it took, and how many of the logs (its own, the server's, Ray's) say the database was locked."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(cfg.model_dump_json())
    with prefect_server(folder, database_url=database_url) as (env, _):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--config", str(folder / "config.json"),
                               "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)  # fmt: skip
        seconds = time.perf_counter() - start
        runs = task_runs(env["PREFECT_API_URL"], "score ")
    logs = {"cli": done.stdout + done.stderr, "server": (folder / "server.log").read_text()}
    logs |= {str(p): p.read_text(errors="replace") for p in Path(ray_temp_dir).rglob("*.log") if p.is_file()}
    return {
        "returncode": done.returncode,
        "stderr_tail": done.stderr[-3000:],
        "summary": json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else None,
        "task_runs": runs,
        "seconds": seconds,
        "locked": {name: text.count(LOCKED) for name, text in logs.items() if LOCKED in text},
    }
