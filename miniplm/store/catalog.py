"""The DuckDB catalog: views over the work directory's Parquet shards, built from the run manifest.

Each view is a `.sql` file in `sql/views/`, a few globs over the work directory's stable folder layout, so a
corpus of many thousands of shards costs the views nothing to parse. The manifest fills in what the run's
views depend on (the live sources, instance spec, split, the scoring models) as three small tables the views select
from, written from Python values: no SQL text is assembled, and `views.sql` is the same for every run.

Bulk data never enters DuckDB's own file, so any number of readers can query while a run writes:
each run writes `views.sql` and a fresh `catalog.duckdb` under a temporary name and renames it into place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from miniplm.store import schemas
from miniplm.store.manifest import RunManifest
from miniplm.store.shards import read_json, temporary_name, write_parquet
from miniplm.store.workdir import Workdir

# The catalog's small tables: what the views read of one run, written from Python values (never as SQL text).
TABLES = {"current_run": schemas.CURRENT_RUN, "sources": schemas.SOURCES, "models": schemas.MODELS}
# Creation order: a view is bound when it is created, so what it reads comes first.
VIEWS = (
    "splits",
    "documents",
    "quarantine",
    "ingest_stats",
    "instance_index",
    "instances",
    "score_rows",
    "scores",
    "scored",
    "candidates",
    "selections",
    "member_rows",
    "selection_members",
    "selected",
    "accounting",
)
# The key of the empty shards that give every glob a match and every view its columns. It sorts after every hex key:
# DuckDB estimates a glob's rows from its first file, and an empty first file (estimated 0 rows) would turn the
# views' joins on `current_run` around, so that the spec, split and model folders are no longer pruned.
NONE = "none"


def load_sql(name: str) -> str:
    """A query from miniplm/sql/, without its final semicolon so it can be nested as a subquery."""
    return resources.files("miniplm").joinpath("sql", f"{name}.sql").read_text().strip().removesuffix(";")


def _view_files(names: Iterable[str]) -> str:
    return "\n".join(resources.files("miniplm").joinpath("sql", "views", f"{n}.sql").read_text() for n in names)


def ensure_anchors(workdir: Workdir) -> None:
    """Empty shards with the right columns under every glob the views read, so a view never meets a folder with
    no files (DuckDB refuses a glob that matches nothing) and always has its columns."""
    empty = {
        workdir.documents(NONE, 0): schemas.DOCUMENT,
        workdir.quarantine_dir(NONE) / "part-00000.parquet": schemas.QUARANTINE,
        workdir.instances(NONE, NONE, 0): schemas.INSTANCE,
        workdir.splits(NONE, NONE, 0): schemas.SPLIT,
        workdir.partition_scores_dir(NONE, NONE, NONE, 0) / "empty.parquet": schemas.SCORE,
        workdir.selection(NONE): schemas.SELECTION,
        workdir.selected(NONE): schemas.MEMBER,
    }
    for path, schema in empty.items():
        if not path.exists():
            write_parquet(pa.Table.from_pylist([], schema=schema), path)
    if not workdir.ingest_stats(NONE).exists():
        workdir.ingest_stats(NONE).write_text("{}")


def catalog_tables(workdir: Workdir, manifest: RunManifest | None) -> dict[str, pa.Table]:
    """The run's settings, its sources in order and every model that scored here, as the views read them."""
    registry = read_json(workdir.registry_file) if workdir.registry_file.exists() else {}
    current = {
        "instance_spec": manifest.instance_spec if manifest else NONE,
        "split_key": manifest.split_key if manifest else NONE,
        "teacher_fp": manifest.teacher.fingerprint if manifest else "",
        "reference_fp": manifest.reference.fingerprint if manifest and manifest.reference else "",
        "variant": manifest.score_variant if manifest else "",
        "selection_id": (manifest.selection_id if manifest else None) or "",
    }
    sources = [
        {"source_order": i, "source": s.spec, "source_key": s.source_key}
        for i, s in enumerate(manifest.sources if manifest else [])
    ]
    models = [{"model_fp": fp, "role": m["role"], "spec": m["spec"], "path": m["path"]} for fp, m in registry.items()]
    rows = {"current_run": [current], "sources": sources, "models": models}
    return {name: pa.Table.from_pylist(rows[name], schema=schema) for name, schema in TABLES.items()}


def views_sql() -> str:
    """`views.sql`: the same text for every run; what differs per run is in the tables it reads from `catalog/`."""
    header = (
        '-- The public views of a miniplm work directory (README: "The scored corpus in SQL").\n'
        "-- Paths are relative to the work directory: run from inside it, or `set file_search_path = '<workdir>'`.\n"
        "-- The run's settings, sources and models are read from catalog/*.parquet, written by each run.\n"
    )
    return header + "\n" + _view_files([*TABLES, *VIEWS])


# What one pipeline query may hold in memory; beyond it DuckDB spills to the work directory, so a plan or a
# selection over billions of rows stays within a bound.
QUERY_MEMORY = "1GB"


def connect(workdir: Workdir, manifest: RunManifest | None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the views of `manifest`: what pipeline steps query."""
    ensure_anchors(workdir)
    con = duckdb.connect(
        config={
            "memory_limit": QUERY_MEMORY,
            "temp_directory": str(workdir.root / ".duckdb-spill"),
            "preserve_insertion_order": False,
            "file_search_path": str(workdir.root),
        }
    )
    for name, table in catalog_tables(workdir, manifest).items():
        con.from_arrow(table).create(name)
    con.execute(_view_files(VIEWS))
    return con


def publish_catalog(workdir: Workdir, manifest: RunManifest) -> Path:
    """Write the run's tables, views.sql and a fresh catalog.duckdb built by running views.sql (renamed into place:
    readers keep their old snapshot)."""
    ensure_anchors(workdir)
    for name, table in catalog_tables(workdir, manifest).items():
        write_parquet(table, workdir.catalog_table(name))
    sql = views_sql()
    views_tmp = temporary_name(workdir.views_sql)
    views_tmp.write_text(sql)
    os.replace(views_tmp, workdir.views_sql)
    db_tmp = temporary_name(workdir.catalog)
    con = duckdb.connect(str(db_tmp), config={"file_search_path": str(workdir.root)})
    try:
        con.execute(sql)
    finally:
        con.close()
    os.replace(db_tmp, workdir.catalog)
    return workdir.catalog


class ReadOnlyQueryError(RuntimeError):
    """A query tried to write a file or change a setting, which `miniplm sql` never does."""


def open_readonly(workdir: Workdir) -> duckdb.DuckDBPyConnection:
    """The catalog, read-only, with every setting locked: a query can read the views and the user's own files, and
    can neither write a file (with `checked_statements`) nor change where DuckDB writes logs, profiles or extensions."""
    if not workdir.catalog.exists():
        raise FileNotFoundError(f"{workdir.catalog} does not exist yet; run `miniplm run` first")
    con = duckdb.connect(
        str(workdir.catalog),
        read_only=True,
        config={
            "autoinstall_known_extensions": False,  # installing one writes into the home directory
            "allow_community_extensions": False,
            "memory_limit": QUERY_MEMORY,
            "temp_directory": str(workdir.root / ".duckdb-spill"),
            "file_search_path": str(workdir.root),  # (a connection's own setting: given to each one)
        },
    )
    if not con.sql("select current_setting('lock_configuration')").fetchall()[0][0]:
        # else an earlier open in this process locked it: DuckDB shares one database per file and configuration
        con.execute("set lock_configuration = true")  # no SET / PRAGMA can change a setting from here on
    return con


# Statement kinds that only read. COPY, EXPORT, ATTACH, SET, INSTALL and anything DuckDB adds later are refused.
READ_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA", "CALL"}
# PRAGMAs that only describe (the rest set options, which the locked configuration refuses anyway)
READ_PRAGMAS = {
    "table_info", "show_tables", "show_tables_expanded", "show", "database_list", "database_size", "storage_info",
    "version", "platform", "functions", "metadata_info", "user_agent", "show_databases",
}  # fmt: skip
_EXPLAIN = re.compile(r"^\s*explain\s*(\([^)]*\))?\s*(analy[sz]e\b)?", re.IGNORECASE)
_PRAGMA = re.compile(r"^\s*pragma\s+(\w+)", re.IGNORECASE)
HOW_TO_KEEP = (
    "to keep a result, use `miniplm sql QUERY --output out.parquet` (or .csv), "
    "or `miniplm.open(workdir).sql(QUERY)` in Python"
)


def _refuse(kind: str) -> ReadOnlyQueryError:
    return ReadOnlyQueryError(f"miniplm sql is read-only: {kind} statements are not allowed; {HOW_TO_KEEP}.")


def checked_statements(sql: str) -> list[str]:
    """The statements of `sql`, each one checked to only read; refuses the whole text before anything runs."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        return [sql]  # a syntax error: running it reports the error with its position, and runs nothing
    checked = []
    for statement in statements:
        try:
            kind, text = statement.type.name, statement.query
        except ValueError as exc:  # a statement kind this DuckDB build cannot even name (UPDATE EXTENSIONS)
            raise _refuse("these") from exc
        if kind not in READ_STATEMENTS:
            raise _refuse(kind)
        if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs its statement: check what it explains
            checked_statements(_EXPLAIN.sub("", text, count=1))
        if kind == "PRAGMA":
            name = _PRAGMA.match(text)
            if name is None or name.group(1).lower() not in READ_PRAGMAS:
                raise _refuse(f"PRAGMA {name.group(1) if name else ''}".strip())
        checked.append(text)
    return checked


def query(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    """Run one read-only statement (refused before it runs if it could write): its result."""
    statements = checked_statements(sql)
    if len(statements) != 1:
        raise ReadOnlyQueryError(f"expected one statement, got {len(statements)}")
    return con.sql(statements[0])


EXPORT_FORMATS = (".parquet", ".csv")


def write_result(relation: duckdb.DuckDBPyRelation, path: str | Path, workdir: Workdir) -> Path:
    """Save a query's result (`miniplm sql --output`): Parquet or CSV by the file's suffix, never inside the work
    directory, whose folders the pipeline reads as its own data."""
    target = Path(path).expanduser().resolve()
    if target.is_relative_to(workdir.root):
        raise ReadOnlyQueryError(f"{path}: inside the work directory {workdir.root}; write the result elsewhere")
    if target.suffix.lower() not in EXPORT_FORMATS:
        raise ReadOnlyQueryError(f"{path}: unknown output format; use a name ending in .parquet or .csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(target)
    if target.suffix.lower() == ".parquet":
        relation.write_parquet(str(tmp), compression="zstd")
    else:
        relation.write_csv(str(tmp), header=True)
    os.replace(tmp, target)
    return target
