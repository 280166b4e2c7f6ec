"""Selection: rank the scored candidates in DuckDB and keep the top fraction (or a token budget).

Every selection is recorded (parameters, model fingerprints, counts, threshold) as one row in
`selections/<id>.parquet`, its members in `selected/<id>.parquet`. The id is a hash of what determines
the result, so repeating a selection finds the existing record instead of adding a copy.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from miniplm.catalog import connect, load_sql
from miniplm.config import SelectConfig
from miniplm.hashing import stable_hash
from miniplm.shards import write_parquet
from miniplm.workdir import Workdir

SELECTION_SCHEMA = pa.schema(
    [
        ("selection_id", pa.string()),
        ("method", pa.string()),
        ("alpha", pa.float64()),
        ("budget_tokens", pa.int64()),
        ("teacher", pa.string()),
        ("teacher_fp", pa.string()),
        ("reference", pa.string()),
        ("reference_fp", pa.string()),
        ("n_candidates", pa.int64()),
        ("n_selected", pa.int64()),
        ("n_nonfinite", pa.int64()),
        ("n_unscored", pa.int64()),
        ("threshold", pa.float64()),
        ("selected_tokens", pa.int64()),
        ("created_at", pa.timestamp("us")),
    ]
)


def candidate_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    n_finite, n_nonfinite, n_unscored = con.execute(load_sql("count_candidates")).fetchall()[0]
    return {"n_finite": n_finite, "n_nonfinite": n_nonfinite, "n_unscored": n_unscored}


def top_fraction(con: duckdb.DuckDBPyConnection, alpha: float) -> pa.Table:
    k = math.floor(alpha * candidate_counts(con)["n_finite"])
    return con.sql(load_sql("select_top_fraction"), params={"k": k}).to_arrow_table()


def token_budget(con: duckdb.DuckDBPyConnection, budget_tokens: int) -> pa.Table:
    return con.sql(load_sql("select_token_budget"), params={"budget_tokens": budget_tokens}).to_arrow_table()


def uniform_sample(con: duckdb.DuckDBPyConnection, k: int, seed: int) -> pa.Table:
    return con.sql(load_sql("sample_uniform"), params={"k": k, "seed": str(seed)}).to_arrow_table()


def selection_id(manifest: dict, cfg: SelectConfig) -> str:
    sources = [s["source_key"] for s in manifest["sources"]]
    return stable_hash(
        "selection-v1",
        cfg.model_dump(),
        manifest["teacher"]["fingerprint"],
        manifest["reference"]["fingerprint"],
        manifest["instance_spec"],
        manifest["split_key"],
        sorted(sources),
    )[:16]


def run_selection(workdir: Workdir, manifest: dict, cfg: SelectConfig) -> dict:
    """Rank, keep, and record. Returns the selection's record."""
    sid = selection_id(manifest, cfg)
    record_path, members_path = workdir.selection(sid), workdir.selected(sid)
    if record_path.exists() and members_path.exists():
        return pq.read_table(record_path).to_pylist()[0]
    con = connect(workdir, manifest)
    counts = candidate_counts(con)
    if cfg.budget_tokens is not None:
        method, kept = "token_budget", token_budget(con, cfg.budget_tokens)
    else:
        method, kept = "top_fraction", top_fraction(con, cfg.alpha)
    scores = kept.column("score").to_pylist()
    record = {
        "selection_id": sid,
        "method": method,
        "alpha": cfg.alpha if cfg.budget_tokens is None else None,
        "budget_tokens": cfg.budget_tokens,
        "teacher": manifest["teacher"]["spec"],
        "teacher_fp": manifest["teacher"]["fingerprint"],
        "reference": manifest["reference"]["spec"],
        "reference_fp": manifest["reference"]["fingerprint"],
        "n_candidates": counts["n_finite"] + counts["n_nonfinite"] + counts["n_unscored"],
        "n_selected": kept.num_rows,
        "n_nonfinite": counts["n_nonfinite"],
        "n_unscored": counts["n_unscored"],
        "threshold": min(scores) if scores else None,
        "selected_tokens": int(pc.sum(kept.column("n_tokens")).as_py() or 0),
        "created_at": datetime.now(UTC).replace(tzinfo=None),
    }
    members = kept.append_column("selection_id", pa.array([sid] * kept.num_rows, pa.string()))
    members = members.select(["selection_id", "instance_id", "score", "n_tokens", "rank"])
    write_parquet(members, members_path)
    write_parquet(
        pa.Table.from_pylist([record], schema=SELECTION_SCHEMA), record_path
    )  # the record last: it marks completion
    return record
