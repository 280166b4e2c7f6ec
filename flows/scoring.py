"""Scoring as a map over partitions, one task per (model, partition), on the task runner the config names.

plan (candidates this model has not scored, in partitions of minutes of work) ─ score partition ×N
"""

from __future__ import annotations

from prefect import flow, unmapped

from flows.runners import task_resources, task_runner, task_score_config
from flows.steplog import say
from miniplm.config import RunnerConfig, ScoreConfig
from miniplm.scoring.partitions import ScoringFigures, merge_summaries
from miniplm.store.manifest import ModelRef, RunManifest
from tasks import pipeline_tasks


@flow(name="miniplm-score", log_prints=True, flow_run_name="score {role}")
def miniplm_score(
    workdir: str, manifest: RunManifest, model: ModelRef, cfg: ScoreConfig, role: str, runner: RunnerConfig, gpus: bool
) -> ScoringFigures:
    """Score every candidate `model` has not scored yet; a partition already scored is never planned again."""
    partitions = pipeline_tasks.plan_scoring(workdir, manifest, model, cfg, gpus)
    say(f"score-{role}: {len(partitions)} partitions, {sum(p.tokens for p in partitions):,} tokens to score")
    with task_resources(runner, gpus):
        futures = pipeline_tasks.score_partition.map(
            workdir, unmapped(manifest), unmapped(model), partitions, unmapped(task_score_config(runner, cfg, gpus))
        )
    return merge_summaries(model, [f.result() for f in futures], len(partitions))


def score_with(runner: RunnerConfig, cfg: ScoreConfig):
    """The scoring flow on the configured task runner."""
    return miniplm_score.with_options(task_runner=task_runner(runner, cfg.device))
