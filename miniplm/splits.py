"""Which documents train the reference (D_ref), which are held out, which are scored (the pool).

Membership is a seeded hash of doc_id against the fractions, so it never moves when the corpus grows:
a document that was in D_ref stays there, and new documents fall into each part at the same rates.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from miniplm import schemas
from miniplm.config import PipelineConfig, SplitConfig
from miniplm.hashing import stable_hash, unit_interval
from miniplm.shards import write_parquet

REFERENCE, HELDOUT, POOL = "reference", "heldout", "pool"


def split_config(cfg: PipelineConfig) -> SplitConfig:
    """The split a run uses: a reference the user brings was trained on none of this corpus, so nothing is set
    aside for it."""
    if cfg.reference.spec == "train":
        return cfg.split
    return cfg.split.model_copy(update={"reference_fraction": 0.0})


def split_key(cfg: SplitConfig) -> str:
    return stable_hash("split-v1", cfg.seed, cfg.reference_fraction, cfg.heldout_fraction)[:16]


def split_of(doc: str, cfg: SplitConfig) -> str:
    u = unit_interval(cfg.seed, "split", doc)
    if u < cfg.reference_fraction:
        return REFERENCE
    if u < cfg.reference_fraction + cfg.heldout_fraction:
        return HELDOUT
    return POOL


def write_splits(documents: Path, out: Path, cfg: SplitConfig) -> dict[str, int]:
    """The split of every document of one documents shard, as a shard beside it."""
    doc_ids = pq.read_table(documents, columns=["doc_id"]).column("doc_id").to_pylist()
    splits = [split_of(d, cfg) for d in doc_ids]
    if not out.exists():
        write_parquet(pa.table({"doc_id": doc_ids, "split": splits}, schema=schemas.SPLIT), out)
    return {name: splits.count(name) for name in (REFERENCE, HELDOUT, POOL)}
