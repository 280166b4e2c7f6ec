"""miniplm: MiniPLM Difference Sampling as a library (no Prefect import here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from miniplm.selection.scored_corpus import ScoredCorpus

from miniplm.version import __version__

__all__ = ["__version__", "open"]


def open(workdir: str | Path) -> ScoredCorpus:  # noqa: A001 -- miniplm.open(workdir), as a notebook reads it
    """The scored corpus of a work directory, read-only: `.sql(query)`, `.selected()`, `.scored()`, `.documents()`."""
    from miniplm.selection.scored_corpus import ScoredCorpus

    return ScoredCorpus(workdir)
