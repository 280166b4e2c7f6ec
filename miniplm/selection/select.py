"""Selection: rank the scored candidates in DuckDB and keep the top fraction (or a token budget): over every
candidate (the paper's), within each source, or drawn with a temperature.

Every selection is recorded (parameters, model fingerprints, counts, threshold) as one row in
`selections/<id>.parquet`, its members in `selected/<id>.parquet`. The id is a hash of what determines
the result, so repeating a selection finds the existing record instead of adding a copy.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, field_serializer

from miniplm.config import SelectConfig
from miniplm.store import schemas
from miniplm.store.catalog import connect, load_sql
from miniplm.store.hashing import stable_hash
from miniplm.store.manifest import RunManifest
from miniplm.store.shards import temporary_name, write_parquet
from miniplm.store.workdir import Workdir


class SelectionRecord(BaseModel):
    """One selection as recorded (`selections/<id>.parquet`, a row of the `selections` view): what determined it and
    what it kept."""

    # An infinite threshold stays a number; the time reads as str() does: a task's cache key hashed the record as a
    # plain dict before it was a model, and hashes the same (tests/selection/test_select.py).
    model_config = ConfigDict(ser_json_inf_nan="constants")

    selection_id: str
    method: str
    alpha: float | None
    budget_tokens: int | None
    teacher: str
    teacher_fp: str
    reference: str | None
    reference_fp: str | None
    n_candidates: int
    n_selected: int
    n_nonfinite: int
    n_unscored: int
    threshold: float | None
    selected_tokens: int
    strata: str | None = None  # (a selection recorded before the modes has none of these three)
    temperature: float | None = None
    seed: int | None = None
    created_at: datetime

    @field_serializer("created_at", when_used="json")
    def _as_str(self, created_at: datetime) -> str:
        return str(created_at)


class CandidateCounts(BaseModel):
    """The candidates a selection ranks (a finite score), and those it cannot (a NaN or infinite score, or none)."""

    n_finite: int
    n_nonfinite: int
    n_unscored: int


class KeptFigures(BaseModel):
    """What a members file holds: how many instances, their teacher tokens, and the lowest score kept."""

    n_selected: int
    selected_tokens: int
    threshold: float | None


def candidate_counts(con: duckdb.DuckDBPyConnection) -> CandidateCounts:
    n_finite, n_nonfinite, n_unscored = con.execute(load_sql("count_candidates")).fetchall()[0]
    return CandidateCounts(n_finite=n_finite, n_nonfinite=n_nonfinite, n_unscored=n_unscored)


def write_members(con: duckdb.DuckDBPyConnection, sql: str, params: dict, out: Path) -> KeptFigures:
    """Stream a member query into a Parquet shard (temporary name, then rename) and return its figures."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(out)
    con.sql(sql, params=params).write_parquet(str(tmp), compression="zstd")
    os.replace(tmp, out)
    n, tokens, lowest = con.execute(load_sql("members_summary"), {"path": str(out)}).fetchall()[0]
    return KeptFigures(n_selected=n, selected_tokens=int(tokens), threshold=lowest)


def top_fraction(con: duckdb.DuckDBPyConnection, alpha: float, out: Path, sid: str, n_finite: int) -> KeptFigures:
    """The floor(alpha * N) best: find the k-th score, keep what is above it and the first ties at it by id."""
    k = math.floor(alpha * n_finite)
    threshold, ties = math.inf, 0
    if k > 0:
        threshold = con.execute(load_sql("score_threshold"), {"k": k}).fetchall()[0][0]
        above = con.execute(load_sql("count_above_threshold"), {"threshold": threshold}).fetchall()[0][0]
        ties = k - above
    params = {"threshold": threshold, "ties": ties, "selection_id": sid}
    return write_members(con, load_sql("select_top_fraction"), params, out)


def token_budget(con: duckdb.DuckDBPyConnection, budget_tokens: int, out: Path, sid: str) -> KeptFigures:
    params = {"budget_tokens": budget_tokens, "selection_id": sid}
    return write_members(con, load_sql("select_token_budget"), params, out)


def by_key(con: duckdb.DuckDBPyConnection, cfg: SelectConfig, out: Path, sid: str) -> KeptFigures:
    """A selection beyond the paper's: the top alpha (or a token budget) of each source, or drawn with a
    temperature, or both; ranked by the key of ranking_keys.sql within each stratum."""
    con.execute(load_sql("ranking_keys"))
    keys = {"temperature": cfg.temperature, "seed": str(cfg.seed), "by_source": cfg.strata == "source"}
    if cfg.budget_tokens is not None:
        params = keys | {"budget_tokens": cfg.budget_tokens, "selection_id": sid}
        return write_members(con, load_sql("select_by_key_budget"), params, out)
    stratum_thresholds(con, keys, cfg.alpha)
    kept = write_members(con, load_sql("select_by_key"), keys | {"selection_id": sid}, out)
    con.execute(load_sql("drop_stratum_keys"))
    return kept


def stratum_thresholds(con: duckdb.DuckDBPyConnection, keys: dict, alpha: float) -> None:
    """The `stratum_keys` table (every candidate's stratum and key) and the `stratum_thresholds` table: per stratum,
    the floor(alpha * n)-th highest key, how many tied at it fit, and the last tied id that does. Each stratum's keys
    are sorted alone, as the paper's selection sorts the scores alone."""
    con.execute(load_sql("stratum_keys"), keys)
    con.execute(load_sql("stratum_thresholds"))
    for stratum, n in con.execute(load_sql("stratum_counts")).fetchall():
        k = math.floor(alpha * n)
        if k == 0:
            continue
        threshold = con.execute(load_sql("stratum_kth_key"), {"stratum": stratum, "k": k}).fetchall()[0][0]
        con.execute(load_sql("insert_stratum_threshold"), {"stratum": stratum, "n": n, "k": k, "threshold": threshold})
    con.execute(load_sql("stratum_ties"))
    cut_keys = [key for (key,) in con.execute(load_sql("strata_cut_at_a_tie")).fetchall()]
    if cut_keys:
        con.execute(load_sql("stratum_last_tied"), keys | {"tied_keys": cut_keys})


def selection_id(manifest: RunManifest, cfg: SelectConfig) -> str:
    # the paper's selection hashes what it always did: its ids (and every cache keyed on them) survive the modes
    paper = cfg.model_dump(exclude={"strata", "temperature", "seed"})
    return stable_hash("selection-v2", paper | cfg.mode_fields(), *manifest.scored_corpus)[:16]


def recorded(workdir: Workdir, sid: str) -> bool:
    return workdir.selection(sid).exists() and workdir.selected(sid).exists()


def read_record(workdir: Workdir, sid: str) -> SelectionRecord:
    return SelectionRecord(**pq.read_table(workdir.selection(sid)).to_pylist()[0])


def run_selection(workdir: Workdir, manifest: RunManifest, cfg: SelectConfig) -> SelectionRecord:
    """Rank, keep, and record. Returns the selection's record."""
    sid = selection_id(manifest, cfg)
    record_path, members_path = workdir.selection(sid), workdir.selected(sid)
    if recorded(workdir, sid):
        return read_record(workdir, sid)
    con = connect(workdir, manifest)
    counts = candidate_counts(con)
    method = "token_budget" if cfg.budget_tokens is not None else "top_fraction"
    if cfg.mode_fields():
        kept = by_key(con, cfg, members_path, sid)
    elif cfg.budget_tokens is not None:
        kept = token_budget(con, cfg.budget_tokens, members_path, sid)
    else:
        kept = top_fraction(con, cfg.alpha, members_path, sid, counts.n_finite)
    record = SelectionRecord(
        selection_id=sid,
        method=method,
        alpha=cfg.alpha if cfg.budget_tokens is None else None,
        budget_tokens=cfg.budget_tokens,
        teacher=manifest.teacher.spec,
        teacher_fp=manifest.teacher.fingerprint,
        reference=manifest.reference.spec,
        reference_fp=manifest.reference.fingerprint,
        n_candidates=counts.n_finite + counts.n_nonfinite + counts.n_unscored,
        n_selected=kept.n_selected,
        n_nonfinite=counts.n_nonfinite,
        n_unscored=counts.n_unscored,
        threshold=kept.threshold,
        selected_tokens=kept.selected_tokens,
        strata=cfg.strata,
        temperature=cfg.temperature,
        seed=cfg.seed if cfg.temperature is not None else None,
        created_at=datetime.now(UTC).replace(tzinfo=None),
    )
    table = pa.Table.from_pylist([record.model_dump()], schema=schemas.SELECTION)
    write_parquet(table, record_path)  # last: marks completion
    return record
