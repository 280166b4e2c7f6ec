"""A run's scoring precision as decided (`WORKDIR/precision.json`): the record and its file, without the torch the
decision itself needs (the run summary and `miniplm report` read it)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from miniplm.store.shards import read_json, write_json
from miniplm.store.workdir import Workdir


class DriftMeasure(BaseModel):
    """What scoring a sample in `dtype` instead of float32 moved: scores (nats/token), instances near the middle
    that such a move could carry across the threshold, and the teacher's speedup."""

    dtype: str
    instances: int
    tokens: int
    max_drift: float
    median_drift: float
    near_threshold: int
    speedup: float | None


class PrecisionDecision(BaseModel):
    """The dtype a run scores in and why (`WORKDIR/precision.json`); `measured` when a reduced one was tried."""

    dtype: str
    chosen_by: str
    measured: DriftMeasure | None = None
    max_drift_bound: float | None = None
    fell_back: bool | None = None  # (said only where a measurement decided)


def precision_file(workdir: Workdir) -> Path:
    return workdir.root / "precision.json"


def record_precision(workdir: str, decision: PrecisionDecision) -> PrecisionDecision:
    write_json(decision.model_dump(mode="json"), precision_file(Workdir.open(workdir)))
    return decision


def recorded_precision(workdir: Workdir) -> PrecisionDecision | None:
    path = precision_file(workdir)
    try:
        return PrecisionDecision.model_validate(read_json(path)) if path.exists() else None
    except ValueError:  # a record from an older layout: decided again
        return None
