"""The DuckDB catalog: views over the work directory's Parquet shards, built from the run manifest.

Bulk data never enters DuckDB's own file, so any number of readers can query while a run writes:
each run writes `views.sql` and a fresh `catalog.duckdb` under a temporary name and renames it into place.
"""

from __future__ import annotations

import os
import uuid
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import duckdb

from miniplm.shards import read_json
from miniplm.workdir import Workdir

EMPTY = {
    "documents": "doc_id varchar, text varchar, source varchar, row bigint, n_chars bigint, source_key varchar",
    "quarantine": "source varchar, row bigint, reason varchar, raw varchar",
    "instances": "instance_id varchar, doc_id varchar, chunk_index integer, n_tokens integer, token_ids integer[]",
    "splits": "doc_id varchar, split varchar",
    "scores": "model_fp varchar, instance_id varchar, n_predicted integer, sum_logp double, mean_logp double",
    "selections": "selection_id varchar, method varchar, alpha double, budget_tokens bigint, teacher varchar, "
    "teacher_fp varchar, reference varchar, reference_fp varchar, n_candidates bigint, "
    "n_selected bigint, n_nonfinite bigint, n_unscored bigint, threshold double, "
    "selected_tokens bigint, created_at timestamp",
    "members": "selection_id varchar, instance_id varchar, score double, n_tokens integer",
    "stats": "source varchar, source_key varchar, rows_read bigint, documents bigint, "
    "duplicates_in_source bigint, quarantined bigint",
}


def load_sql(name: str) -> str:
    """A query from miniplm/sql/, without its final semicolon so it can be nested as a subquery."""
    return resources.files("miniplm").joinpath("sql", f"{name}.sql").read_text().strip().removesuffix(";")


def _quote(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _relation(kind: str, files: list[str], reader: str = "read_parquet") -> str:
    """A table expression over files, or an empty one with the right columns when there are none yet."""
    if not files:
        columns = ", ".join(f"null::{c.split(' ', 1)[1]} as {c.split(' ', 1)[0]}" for c in EMPTY[kind].split(", "))
        return f"(select {columns} limit 0)"
    listing = ", ".join(_quote(f) for f in files)
    return f"{reader}([{listing}])"


def _values(rows: list[tuple], width: int) -> str:
    if not rows:
        return "(" + ", ".join(["null"] * width) + ")"  # one all-null row; filtered out by joins
    return ", ".join("(" + ", ".join(_quote(v) for v in row) + ")" for row in rows)


def _rel(workdir: Workdir, path: Path) -> str:
    return str(path.relative_to(workdir.root))


def _live(workdir: Workdir, paths: list[Path]) -> list[str]:
    """The shards that exist so far (a view over a missing file would fail at query time)."""
    return [_rel(workdir, p) for p in paths if p.exists()]


def _existing(workdir: Workdir, pattern: str) -> list[str]:
    return sorted(_rel(workdir, p) for p in workdir.root.glob(pattern) if not p.name.startswith("."))


def render_views(workdir: Workdir, manifest: dict) -> str:
    sources = manifest.get("sources", [])
    keys = [s["source_key"] for s in sources]
    spec, split_key = manifest.get("instance_spec"), manifest.get("split_key")
    registry = read_json(workdir.registry_file) if workdir.registry_file.exists() else {}
    teacher, reference = manifest.get("teacher") or {}, manifest.get("reference") or {}
    fill = {
        "sources_values": _values([(i, s["spec"], s["source_key"]) for i, s in enumerate(sources)], 3),
        "documents_relation": _relation("documents", _live(workdir, [workdir.documents(k) for k in keys])),
        "quarantine_relation": _relation("quarantine", _live(workdir, [workdir.quarantine(k) for k in keys])),
        "stats_relation": _relation("stats", _live(workdir, [workdir.ingest_stats(k) for k in keys]), "read_json"),
        "instances_relation": _relation(
            "instances", _live(workdir, [workdir.instances(spec, k) for k in keys]) if spec else []
        ),
        "splits_relation": _relation(
            "splits", _live(workdir, [workdir.splits(split_key, k) for k in keys]) if split_key else []
        ),
        "scores_relation": _relation("scores", _existing(workdir, "scores/*/*.parquet")),
        "models_values": _values([(fp, m["role"], m["spec"], m["path"]) for fp, m in registry.items()], 4),
        "teacher_fp": teacher.get("fingerprint", ""),
        "reference_fp": reference.get("fingerprint", ""),
        "selections_relation": _relation("selections", _existing(workdir, "selections/*.parquet")),
        "members_relation": _relation("members", _existing(workdir, "selected/*.parquet")),
        "current_selection_id": manifest.get("selection_id") or "",
    }
    return Template(load_sql("views")).substitute(fill)


def connect(workdir: Workdir, manifest: dict) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the views of `manifest`: what pipeline steps query."""
    con = duckdb.connect()
    con.execute(f"set file_search_path = {_quote(str(workdir.root))}")
    con.execute(render_views(workdir, manifest))
    return con


def publish_catalog(workdir: Workdir, manifest: dict) -> Path:
    """Write views.sql and a fresh catalog.duckdb (renamed into place: readers keep their old snapshot)."""
    sql = render_views(workdir, manifest)
    views_tmp = workdir.views_sql.with_name(f".views.{uuid.uuid4().hex}.tmp")
    views_tmp.write_text(sql)
    os.replace(views_tmp, workdir.views_sql)
    db_tmp = workdir.catalog.with_name(f".catalog.{uuid.uuid4().hex}.tmp")
    con = duckdb.connect(str(db_tmp))
    try:
        con.execute(f"set file_search_path = {_quote(str(workdir.root))}")
        con.execute(sql)
    finally:
        con.close()
    os.replace(db_tmp, workdir.catalog)
    return workdir.catalog


class ReadOnlyQueryError(RuntimeError):
    """A query tried to change the catalog, which `miniplm sql` opens read-only."""


def open_readonly(workdir: Workdir) -> duckdb.DuckDBPyConnection:
    if not workdir.catalog.exists():
        raise FileNotFoundError(f"{workdir.catalog} does not exist yet; run `miniplm run` first")
    con = duckdb.connect(str(workdir.catalog), read_only=True)
    con.execute(f"set file_search_path = {_quote(str(workdir.root))}")
    return con


READ_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA", "COPY", "SET", "CALL", "VARIABLE_SET"}


def query(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    """Run read-only SQL: a statement that would change the catalog is refused before it runs."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        statements = []  # let execution report the syntax error with its position
    for statement in statements:
        kind = statement.type.name
        if kind not in READ_STATEMENTS:
            raise ReadOnlyQueryError(
                f"miniplm sql is read-only: {kind} statements are not allowed. The catalog is views over immutable "
                "Parquet shards; to keep a result, `copy (select ...) to 'out.parquet'`."
            )
    try:
        return con.sql(sql)
    except duckdb.Error as exc:
        if "read-only" in str(exc).lower() or "read only" in str(exc).lower():
            raise ReadOnlyQueryError(f"miniplm sql is read-only: {exc}") from exc
        raise
