"""The typed contracts between steps: which sources are live, how they are cut and split, which models score them.

Steps pass these (small, JSON-able) instead of data; the run writes its manifest as `manifest.json`.
"""

from __future__ import annotations

from pydantic import BaseModel

from miniplm.config import SplitConfig


class ModelRef(BaseModel):
    """A model as a local Hugging Face checkpoint and the content fingerprint of its config, weights and tokenizer."""

    spec: str
    path: str
    fingerprint: str


class SourceRef(BaseModel):
    """One input and the content key its shards are named by; `parts` is how many document shards it has."""

    spec: str
    source_key: str
    parts: int = 0


class RunManifest(BaseModel):
    version: int = 2
    sources: list[SourceRef]
    instance_spec: str
    split: SplitConfig
    split_key: str
    teacher: ModelRef
    reference: ModelRef | None = None
    score_variant: str = ""  # dtype and scorer version the run's scores come from
    selection_id: str | None = None

    @property
    def source_keys(self) -> list[str]:
        return [s.source_key for s in self.sources]

    @property
    def scored_corpus(self) -> tuple:
        """What the scored candidates depend on (the models, the scores' precision, the instances, the split, the
        sources), in the order the selection's and the experiment's ids hash them: change it and every id changes."""
        return (
            self.teacher.fingerprint,
            self.reference.fingerprint if self.reference else None,
            self.score_variant,
            self.instance_spec,
            self.split_key,
            sorted(self.source_keys),
        )
