"""What a training run and an evaluation leave (torch-free): a run's `summary.json`, what the experiment's train step
returns of it, and where a student's per-document losses are. Written with the keys `summary.json` always had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from miniplm.store.shards import read_json


class TrainFigures(BaseModel):
    """One trained model: where it is, how far it trained, on how many tokens, and its final losses."""

    model_dir: str
    steps: int
    planned_steps: int | None = None
    stopped_early: bool = False
    best_step: int | None = None  # the evaluation kept (with patience), or the last one evaluated
    parameters: int
    train_tokens_available: int | None = None
    tokens_seen_this_session: int | None = None
    tokens_trained: int | None = None
    layout: str | None = None  # "windows" of a flat stream, or rows of whole "instances"
    teacher_parameters: int | None = None  # Vanilla KD's online teacher
    seconds_this_session: float | None = None
    seconds: float
    final_train_loss: float | None = None
    final_eval_loss: float | None = None


class TrainSummary(TrainFigures):
    """A training run's `summary.json`: its figures, what it depends on (`run_key`) and its loss history."""

    run_key: dict[str, Any]
    history: list[dict[str, Any]] = []

    def eval_curve(self) -> list[tuple[float, float]]:
        """(tokens trained, evaluation loss) at each evaluation."""
        return [(h["tokens"], h["eval_loss"]) for h in self.history if "eval_loss" in h]


class TrainedRun(TrainFigures):
    """What the experiment's train step returns of a student: its figures and the GPU that trained it, if any."""

    gpu: str | None = None


class Evaluation(BaseModel):
    """A student's per-document losses on an evaluation set: the Parquet file and the seconds it took."""

    path: str
    seconds: float


def read_train_summary(path: str | Path) -> TrainSummary:
    """A run's `summary.json` (`path`: the file)."""
    return TrainSummary.model_validate(read_json(Path(path)))
