"""The scored corpus from Python (a notebook): the same read-only views as `miniplm sql`, as DuckDB relations and
polars frames.

    import miniplm
    corpus = miniplm.open("miniplm-demo")
    corpus.sql("select source, count(*) from documents group by all").pl()
    corpus.selected().head()
    corpus.selections()  # every selection made here, with its mode (alpha, strata, temperature, seed)
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from miniplm.store.catalog import load_sql, open_readonly, query, write_result
from miniplm.store.workdir import Workdir


class ScoredCorpus:
    """A work directory's catalog, opened read-only (a run may be writing meanwhile: this sees its last publish)."""

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Workdir.open(workdir)
        self.con = open_readonly(self.workdir)

    def sql(self, query_text: str) -> duckdb.DuckDBPyRelation:
        """One read-only statement, as a DuckDB relation: `.pl()` gives a polars DataFrame, `.arrow()` Arrow record
        batches, `.to_arrow_table()` an Arrow table."""
        return query(self.con, query_text)

    def selected(self, selection_id: str | None = None) -> pl.DataFrame:
        """A selection's members, best first: instance_id, score, rank, n_tokens (default: the current selection)."""
        if selection_id is None:
            return self.con.table("selected").order("rank").pl()
        return self.con.sql(load_sql("members_of_selection"), params={"selection_id": selection_id}).pl()

    def selections(self) -> pl.DataFrame:
        """Every selection made here, oldest first: alpha or token budget, strata, temperature and seed, the models'
        fingerprints, counts and threshold."""
        return self.con.table("selections").order("created_at").pl()

    def scored(self) -> pl.DataFrame:
        """Every candidate with its teacher and reference log-probs and its score (null where not yet scored)."""
        return self.con.table("scored").order("score desc nulls last, instance_id").pl()

    def documents(self) -> pl.DataFrame:
        """Every live document once, with its source, row and split."""
        return self.con.table("documents").pl()

    def export(self, query_text: str, path: str | Path) -> Path:
        """Save a query's result to a .parquet or .csv file outside the work directory."""
        return write_result(self.sql(query_text), path, self.workdir)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> ScoredCorpus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
