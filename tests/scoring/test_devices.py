"""One process per GPU on a multi-GPU node, checked with fake device lists (no GPU here)."""

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

from miniplm.scoring.devices import claim_gpu, node_gpus


def visible_after_a_while() -> tuple[int, str]:
    time.sleep(1.0)  # long enough that every worker process starts and takes a task
    return os.getpid(), os.environ["CUDA_VISIBLE_DEVICES"]


def test_each_worker_process_claims_a_gpu_of_its_own(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    initargs = (("2", "5", "7"), str(tmp_path))
    with ProcessPoolExecutor(3, mp_context=ctx, initializer=claim_gpu, initargs=initargs) as pool:
        seen = [f.result() for f in [pool.submit(visible_after_a_while) for _ in range(6)]]
    by_process = {}
    for pid, gpu in seen:
        assert by_process.setdefault(pid, gpu) == gpu  # a process keeps its GPU across its tasks
    assert sorted(by_process.values()) == ["2", "5", "7"]  # and no two processes share one


def test_a_worker_beyond_the_gpus_says_so(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=claim_gpu, initargs=(("3",), str(tmp_path))) as pool:
        assert pool.submit(visible_after_a_while).result()[1] == "3"
        with pytest.raises(RuntimeError, match="held by another worker"):  # while that worker lives
            claim_gpu(("3",), str(tmp_path))


def test_the_node_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 1")
    assert node_gpus() == ["3", "1"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert node_gpus() == ["0", "1"]


def test_a_multi_gpu_node_scores_in_a_process_per_gpu(monkeypatch):
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    from flows.runners import task_runner
    from miniplm.config import RunnerConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    runner = task_runner(RunnerConfig(), "auto")
    assert isinstance(runner, ProcessPoolTaskRunner) and runner._max_workers == 4
    assert isinstance(task_runner(RunnerConfig(), "cuda:2"), ThreadPoolTaskRunner)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert isinstance(task_runner(RunnerConfig(), "auto"), ThreadPoolTaskRunner)
