"""What the reference step records (in the store, below the stages, so the run summary reads it without torch):
its quality beside the unigram and uniform baselines, and for a trained reference what it was trained on, each size
tried and the teacher-reference gap on D_ref's validation slice.

A trained reference's record is `miniplm_reference.json` in its folder; a given one's is `quality.json` under
`models/given-reference/<fingerprint>/`. Both are written with the keys that were set (`file_json`), as before the
record was typed, and read back into the same record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from miniplm.store.shards import read_json, write_json

INFO = "miniplm_reference.json"


class ReferenceQuality(BaseModel):
    """Validation loss of the model, of a unigram model and of a uniform guess, nats/token, on the same tokens (the
    losses are None when there was nothing to measure on)."""

    validation_loss: float | None = None
    unigram_loss: float | None = None
    uniform_loss: float | None = None
    validation_tokens: int | None = None


class ReferenceCandidate(BaseModel):
    """One reference size trained on D_ref, early-stopped on its validation slice; the lowest `selection_loss` is
    kept."""

    arch: dict[str, Any]
    model_dir: str
    parameters: int
    steps: int
    planned_steps: int | None = None
    stopped_early: bool = False
    best_step: int | None = None
    final_train_loss: float | None = None
    selection_loss: float | None = None
    seconds: float | None = None
    passes: float | None = None
    chosen: bool = False


class SourceGap(BaseModel):
    """Teacher and reference mean log-probs on D_ref's validation slice, for one source."""

    source: str
    instances: int
    predicted_tokens: int
    teacher_logp: float
    reference_logp: float
    gap: float


class ReferenceRecord(ReferenceQuality):
    """The reference step's record: a trained reference's (`trained`), or a given one's (`spec`, its quality only)."""

    trained: bool | None = None
    spec: str | None = None  # a given reference
    trained_on: dict[str, Any] | None = None  # what a trained one depends on besides its settings (kept while equal)
    d_ref_documents: int | None = None
    d_ref_tokens: int | None = None
    train_tokens: int | None = None
    validation_tokens_total: int | None = None
    tokens_seen: int | None = None
    steps: int | None = None
    planned_steps: int | None = None
    stopped_early: bool | None = None
    best_step: int | None = None
    parameters: int | None = None
    arch: dict[str, Any] | None = None
    final_train_loss: float | None = None
    passes: float | None = None
    candidates: list[ReferenceCandidate] | None = None
    validation_gap: list[SourceGap] | None = None

    def file_json(self) -> dict[str, Any]:
        """The keys that were set, as the record's file has always held them."""
        return self.model_dump(exclude_unset=True)

    def summary_json(self) -> dict[str, Any]:
        """What the run summary and the experiment's report state of it (the architecture is in the model's folder)."""
        return self.model_dump(exclude_unset=True, exclude={"arch"})


def read_reference_record(path: Path) -> ReferenceRecord | None:
    return ReferenceRecord.model_validate(read_json(path)) if path.exists() else None


def write_reference_record(record: ReferenceRecord, path: Path) -> Path:
    return write_json(record.file_json(), path)
