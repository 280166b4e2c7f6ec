"""The pipeline's scoring on a real Ray cluster (a head and a second node, CPU only) gives what the local runner
gives: the same partitions, the same scores, the same selection. Minutes (a cluster starts), so marked slow."""

import pytest

from miniplm.catalog import open_readonly
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
from miniplm.workdir import Workdir
from tests.ray_cluster import start_cluster
from tests.tiny import corpus_texts, write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def ray_cluster():
    cluster = start_cluster(worker_nodes=1, cpus_per_node=1)
    yield cluster
    import ray

    ray.shutdown()
    cluster.stop()


def config(tmp_path, models, corpus, runner: RunnerConfig) -> PipelineConfig:
    return PipelineConfig(
        workdir=str(tmp_path / runner.kind),
        corpus=CorpusConfig(paths=[str(corpus)]),
        teacher=str(models["teacher"]),
        instances=InstanceConfig(max_len=48),
        split=SplitConfig(reference_fraction=0.2, heldout_fraction=0.05),
        reference=ReferenceConfig(
            train=TrainConfig(max_steps=15, batch_size=4), accept_weak=True
        ),  # see test_reference
        # one thread per task on both runners, and several partitions, so the cluster has work for both nodes
        score=ScoreConfig(device="cpu", dtype="float32", threads=1, partition_tokens=800),
        student=StudentConfig(enabled=False),
        runner=runner,
    )


def scores(cfg: PipelineConfig) -> tuple[dict, list]:
    con = open_readonly(Workdir.open(cfg.workdir))
    scored = {i: (t, r) for i, t, r in con.sql("select instance_id, teacher_logp, ref_logp from scored").fetchall()}
    selected = [i for (i,) in con.sql("select instance_id from selected order by rank").fetchall()]
    return scored, selected


def test_ray_runner_scores_exactly_as_the_local_runner(tmp_path, models, ray_cluster):
    from flows.pipeline import miniplm_pipeline

    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_texts(120, seed=9))
    local = config(tmp_path, models, corpus, RunnerConfig())
    on_ray = config(tmp_path, models, corpus, RunnerConfig(kind="ray", address=ray_cluster.address, cpus_per_task=1))
    local_summary = miniplm_pipeline(local)
    ray_summary = miniplm_pipeline(on_ray)
    assert ray_summary["score_partitions"]["teacher"] == local_summary["score_partitions"]["teacher"] >= 3
    assert ray_summary["instances_scored_teacher"] == local_summary["instances_scored_teacher"] > 0
    # the partitions ran on both nodes of the cluster
    assert len(ray_summary["score_workers"]["teacher"]) == 2
    assert all(w.startswith("ray:") for w in ray_summary["score_workers"]["teacher"])
    local_scores, local_selected = scores(local)
    ray_scores, ray_selected = scores(on_ray)
    assert ray_scores == local_scores  # bit for bit: same partitions, same batches, one thread each
    assert ray_selected == local_selected
    # a second run on the cluster finds everything scored
    again = miniplm_pipeline(on_ray)
    assert again["instances_scored_teacher"] == again["instances_scored_reference"] == 0
