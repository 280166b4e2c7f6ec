"""`miniplm sql` and `miniplm.open(...).sql` only read: no statement writes a file or changes a setting, whatever it
tries; results are saved with `--output` (or `.export`) outside the work directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

import miniplm
from miniplm import pipeline_steps
from miniplm.store.catalog import ReadOnlyQueryError
from tests.cli_runs import ATTACKS
from tests.workdirs import prepared_workdir

pytestmark = pytest.mark.usefixtures("prefect_harness")  # the CLI processes report to the session's server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, models):
    tmp = tmp_path_factory.mktemp("sql")
    wd, manifest = prepared_workdir(tmp, models, shard_documents=1000)
    pipeline_steps.make_manifest(str(wd.root), manifest)  # publishes the catalog
    return wd


def snapshot(*roots: Path) -> dict:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for root in roots
        for p in root.rglob("*")
        if p.is_file() and ".duckdb-spill" not in p.parts
    }


def miniplm_sql(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "sql", *args], capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_query_cannot_write_or_change_settings(workdir, tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    sql = ATTACKS[name].format(out=out, wd=workdir.root)
    before = snapshot(workdir.root, tmp_path)
    result = miniplm_sql(sql, "--workdir", str(workdir.root), cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing ran, not even the harmless first statement
    assert snapshot(workdir.root, tmp_path) == before
    with miniplm.open(workdir.root) as corpus, pytest.raises(ReadOnlyQueryError):  # the Python API refuses too
        corpus.sql(sql)
    assert snapshot(workdir.root, tmp_path) == before


def test_the_refusal_says_how_to_keep_a_result(workdir, tmp_path):
    result = miniplm_sql(ATTACKS["manifest"].format(wd=workdir.root), "--workdir", str(workdir.root), cwd=tmp_path)
    assert "--output" in result.stderr and "copy (" not in result.stderr.lower()


def test_reading_views_and_the_users_own_files_still_works(workdir, tmp_path):
    own = tmp_path / "mine.json"
    own.write_text(json.dumps([{"a": 1}, {"a": 2}]))
    cases = {
        "select count(*) as n from documents": "n",
        "describe scored": "column_name",
        "pragma table_info('documents')": "cid",
        "explain select 1": "explain_key",
        f"select sum(a) as total from read_json('{own}')": "total",
    }
    for sql, column in cases.items():
        result = miniplm_sql(sql, "--workdir", str(workdir.root), "--format", "csv", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].split(",")[0] == column, sql
    both = miniplm_sql("select 1 as one; select 2 as two", "--workdir", str(workdir.root), "--format", "json",
                       cwd=tmp_path)  # fmt: skip
    assert [json.loads(line) for line in both.stdout.splitlines()] == [[{"one": 1}], [{"two": 2}]]


def test_output_saves_a_result_outside_the_work_directory(workdir, tmp_path):
    sql = "select doc_id, split from documents order by doc_id"
    for name in ("docs.parquet", "docs.csv"):
        result = miniplm_sql(sql, "--workdir", str(workdir.root), "--output", str(tmp_path / name), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    parquet, csv = pl.read_parquet(tmp_path / "docs.parquet"), pl.read_csv(tmp_path / "docs.csv")
    with miniplm.open(workdir.root) as corpus:
        expected = corpus.sql(sql).pl()
        assert parquet.equals(expected) and csv.equals(expected)
        assert corpus.export(sql, tmp_path / "api.parquet").exists()
    before = snapshot(workdir.root)
    inside = miniplm_sql(sql, "--workdir", str(workdir.root), "--output", str(workdir.root / "x.parquet"), cwd=tmp_path)
    assert inside.returncode == 1 and "inside the work directory" in inside.stderr
    unknown = miniplm_sql(sql, "--workdir", str(workdir.root), "--output", str(tmp_path / "x.txt"), cwd=tmp_path)
    assert unknown.returncode == 1 and ".parquet or .csv" in unknown.stderr
    assert snapshot(workdir.root) == before


def test_the_python_api_gives_relations_and_polars_frames(workdir):
    with miniplm.open(workdir.root) as corpus:
        documents = corpus.documents()
        assert isinstance(documents, pl.DataFrame) and documents.height > 0
        assert documents["doc_id"].n_unique() == documents.height
        assert corpus.sql("select count(*) as n from documents").fetchall()[0][0] == documents.height
        assert corpus.sql("select split, count(*) n from documents group by all").arrow().read_all().num_rows == 3
        scored = corpus.scored()
        pool = corpus.sql("select count(*) from instance_index where split = 'pool'").fetchall()[0][0]
        assert scored.height == pool > 0 and scored["score"].null_count() == pool  # prepared, not yet scored
        assert corpus.selected().height == 0  # nothing selected in a prepared-only work directory


def test_the_scored_corpus_opens_twice_in_one_process(workdir):
    """DuckDB shares one database per file within a process: a second open finds the configuration locked by the
    first, and still resolves the views' relative paths."""
    first, second = miniplm.open(workdir.root), miniplm.open(workdir.root)
    count = first.sql("select count(*) from documents").fetchall()[0][0]
    assert count > 0 and second.sql("select count(*) from documents").fetchall()[0][0] == count
    with pytest.raises(duckdb.Error, match="locked"):
        second.con.execute("set file_search_path = '/'")
