"""miniplm: MiniPLM Difference Sampling as a library (no Prefect import here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from miniplm.scored_corpus import ScoredCorpus

__version__ = "0.1.0"


def open(workdir: str | Path) -> ScoredCorpus:  # noqa: A001 -- miniplm.open(workdir), as a notebook reads it
    """The scored corpus of a work directory, read-only: `.sql(query)`, `.selected()`, `.scored()`, `.documents()`."""
    from miniplm.scored_corpus import ScoredCorpus

    return ScoredCorpus(workdir)
