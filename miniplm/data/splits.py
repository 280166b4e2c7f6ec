"""Which documents train the reference (D_ref), which are held out, which are scored (the pool).

Membership is a seeded hash of doc_id against the fractions, so it never moves when the corpus grows:
a document that was in D_ref stays there, and new documents fall into each part at the same rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from miniplm.config import PipelineConfig, SplitConfig
from miniplm.store import schemas
from miniplm.store.hashing import stable_hash, unit_interval
from miniplm.store.shards import write_parquet

REFERENCE, HELDOUT, POOL = "reference", "heldout", "pool"
# D_ref's share when none is given: the paper's 5% where the corpus is large, more where it is small, so that D_ref
# holds about AUTO_REFERENCE_TOKENS tokens (at most AUTO_REFERENCE_MAX of the documents)
AUTO_REFERENCE_MIN, AUTO_REFERENCE_MAX, AUTO_REFERENCE_TOKENS = 0.05, 0.2, 1_000_000


def split_config(cfg: PipelineConfig) -> SplitConfig:
    """The split a run uses: a reference the user brings was trained on none of this corpus, so nothing is set
    aside for it."""
    if cfg.reference.spec == "train":
        return cfg.split
    return cfg.split.model_copy(update={"reference_fraction": 0.0})


def auto_reference_fraction(corpus_tokens: int) -> float:
    share = AUTO_REFERENCE_TOKENS / max(1, corpus_tokens)
    return round(min(AUTO_REFERENCE_MAX, max(AUTO_REFERENCE_MIN, share)), 3)


def resolve_split(cfg: SplitConfig, corpus_tokens: int, previous: SplitConfig | None) -> SplitConfig:
    """The split with D_ref's share decided: as given, or chosen from the corpus's size the first time and kept
    after (`previous`, the work directory's last split), so that membership does not move when the corpus grows."""
    if cfg.reference_fraction is not None:
        return cfg
    if previous is not None and previous.auto_reference and previous.reference_fraction is not None:
        fraction = previous.reference_fraction
    else:
        fraction = auto_reference_fraction(corpus_tokens)
    return cfg.model_copy(update={"reference_fraction": fraction, "auto_reference": True})


def split_key(cfg: SplitConfig) -> str:
    return stable_hash("split-v1", cfg.seed, cfg.reference_fraction, cfg.heldout_fraction)[:16]


def split_of(doc: str, cfg: SplitConfig) -> str:
    u = unit_interval(cfg.seed, "split", doc)
    if u < cfg.reference_fraction:
        return REFERENCE
    if u < cfg.reference_fraction + cfg.heldout_fraction:
        return HELDOUT
    return POOL


@dataclass
class SplitCounts:
    """Documents in each split (of a shard, or of the corpus)."""

    reference: int = 0
    heldout: int = 0
    pool: int = 0

    def __add__(self, other: SplitCounts) -> SplitCounts:
        return SplitCounts(self.reference + other.reference, self.heldout + other.heldout, self.pool + other.pool)


def write_splits(documents: Path, out: Path, cfg: SplitConfig) -> SplitCounts:
    """The split of every document of one documents shard, as a shard beside it."""
    doc_ids = pq.read_table(documents, columns=["doc_id"]).column("doc_id").to_pylist()
    splits = [split_of(d, cfg) for d in doc_ids]
    if not out.exists():
        write_parquet(pa.table({"doc_id": doc_ids, "split": splits}, schema=schemas.SPLIT), out)
    return SplitCounts(splits.count(REFERENCE), splits.count(HELDOUT), splits.count(POOL))
