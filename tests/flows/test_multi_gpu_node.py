"""A node with several GPUs: a process per GPU, each scoring partitions and training students on its own GPU, with the
same results as one process working one task at a time. Checked with a fake device list (no GPU here): the worker
processes claim the fake GPUs, then run on the CPU."""

import tempfile
from pathlib import Path

import polars as pl
import pytest
import torch
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from transformers import AutoTokenizer

from flows.runners import student_runner
from flows.students import miniplm_students
from miniplm.config import RunnerConfig, ScoreConfig, StudentConfig, TrainConfig, small_llama
from miniplm.data.sequences import write_sequences
from miniplm.experiment.arms import ArmData, StudentRun
from miniplm.store.workdir import Workdir
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_harness")


def student_runs(tmp_path, models, out: str) -> list[StudentRun]:
    tokenizer = AutoTokenizer.from_pretrained(models["tokenizer"])
    tokens = tmp_path / "tokens.bin"
    if not tokens.exists():
        write_sequences(tokens, (tokenizer(t)["input_ids"] for t in corpus_texts(60)))
    data = ArmData(arm="uniform", alpha=0.5, seed=None, key="k", members="", instances=60, teacher_tokens=0,
                   student_tokens=0, tokens_path=str(tokens), composition=[])  # fmt: skip
    return [
        StudentRun(
            arm="uniform",
            alpha=0.5,
            seed=seed,
            data=data,
            steps=6,
            out_dir=str(tmp_path / out / str(seed)),
            tokenizer=str(models["tokenizer"]),
            learning_rate=3e-3,
        )
        for seed in range(3)
    ]


def test_a_multi_gpu_node_trains_a_student_per_gpu_process(tmp_path, models, monkeypatch):
    student = StudentConfig(arch=small_llama(2, 32), train=TrainConfig(max_steps=None, batch_size=4, block_size=32))
    one_by_one = student_runs(tmp_path, models, "one-by-one")
    workdir = str(Workdir.create(tmp_path / "wd").root)
    sequential = miniplm_students.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))(
        workdir, one_by_one, [student] * 3, None, RunnerConfig()
    )

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    runner, on_ray = student_runner(RunnerConfig(), "auto")
    assert isinstance(runner, ProcessPoolTaskRunner) and runner._max_workers == 2 and not on_ray
    assert isinstance(student_runner(RunnerConfig(), "cuda:1")[0], ThreadPoolTaskRunner)  # one GPU named: one
    per_gpu = student_runs(tmp_path, models, "per-gpu")
    parallel = miniplm_students.with_options(task_runner=runner)(workdir, per_gpu, [student] * 3, None,
                                                                 RunnerConfig())  # fmt: skip

    assert {p["result"].gpu for p in parallel} <= {"4", "6"}  # each worker took one GPU of its own
    assert {s["result"].gpu for s in sequential} == {None}
    for one, other in zip(sequential, parallel, strict=True):
        assert not one["cached"] and not other["cached"]
        assert one["result"].steps == other["result"].steps == 6
        assert other["result"].final_train_loss == pytest.approx(one["result"].final_train_loss, abs=1e-4)


def test_a_multi_gpu_node_scores_in_a_process_per_gpu(tmp_path, models, monkeypatch):
    from flows.pipeline import miniplm_pipeline
    from flows.runners import task_runner
    from flows.scoring import miniplm_score
    from miniplm.pipeline_steps import previous_manifest
    from miniplm.scoring.partitions import score_variant
    from tests.workdirs import pipeline_config

    corpus = write_jsonl(tmp_path / "a.jsonl", corpus_texts(80))
    off = StudentConfig(enabled=False)
    cfg = pipeline_config(tmp_path, models, [corpus], student=off, score=ScoreConfig(dtype="float32"))
    first = miniplm_pipeline(cfg)
    manifest = previous_manifest(cfg.workdir)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    claims_before = set(Path(tempfile.gettempdir()).glob("miniplm-gpu-claims-*"))
    runner = task_runner(RunnerConfig(), "auto")
    assert isinstance(runner, ProcessPoolTaskRunner) and runner._max_workers == 2
    small = ScoreConfig(dtype="bfloat16", partition_tokens=300)
    bf16 = manifest.model_copy(update={"score_variant": score_variant(small, False)})  # everything scored again
    scored = miniplm_score.with_options(task_runner=runner)(cfg.workdir, bf16, manifest.teacher, small, "teacher",
                                                            RunnerConfig(), False)  # fmt: skip

    assert set(Path(tempfile.gettempdir()).glob("miniplm-gpu-claims-*")) == claims_before  # the claims went with it

    assert scored.partitions > 2 and scored.instances_scored == first.candidates
    assert {w.rsplit(" gpu ", 1)[1] for w in scored.workers} <= {"4", "6"}  # every partition on a claimed GPU
    root = Path(cfg.workdir) / "scores" / f"model_fp={manifest.teacher.fingerprint}"
    by_variant = {
        d.name.split("=")[1].split("-")[0]: pl.concat([pl.read_parquet(f) for f in d.rglob("*.parquet")])
        for d in root.glob("variant=*")
    }
    both = by_variant["float32"].join(by_variant["bfloat16"], on="instance_id")
    assert both.height == by_variant["bfloat16"].height == first.candidates  # each instance once
    assert (both["mean_logp"] - both["mean_logp_right"]).abs().max() < 0.05  # the same scores, in bfloat16
