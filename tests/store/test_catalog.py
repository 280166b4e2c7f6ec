"""The views are a few globs over a stable folder layout: cheap with any number of shards, blind to removed
sources, and unique per key whatever the shards hold."""

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa

from miniplm.store import schemas
from miniplm.store.catalog import connect, views_sql
from miniplm.store.hashing import doc_id, normalize_text
from miniplm.store.manifest import ModelRef
from miniplm.store.shards import write_parquet
from tests.tiny import corpus_texts
from tests.workdirs import prepared_workdir


def test_views_do_not_grow_with_the_number_of_shards(tmp_path, models):
    one_wd, one = prepared_workdir(tmp_path, models, shard_documents=1000)
    many_wd, many = prepared_workdir(tmp_path, models, shard_documents=7)
    assert [s.parts for s in one.sources] == [1, 1] and sum(s.parts for s in many.sources) >= 15
    assert "part-0" not in views_sql() and "$" not in views_sql()  # one text for every run, no value filled in
    distinct = len({doc_id(normalize_text(t)) for t in corpus_texts(120, seed=2)})  # 10 are in both files
    for wd, manifest in ((one_wd, one), (many_wd, many)):
        con = connect(wd, manifest)
        assert con.sql("select count(*) from documents").fetchall() == [(distinct,)]
    same = "select instance_id, n_tokens, split from instance_index order by instance_id"
    assert connect(one_wd, one).sql(same).fetchall() == connect(many_wd, many).sql(same).fetchall()


def test_a_source_no_longer_in_the_corpus_is_not_read(tmp_path, models):
    wd, manifest = prepared_workdir(tmp_path, models, shard_documents=1000)
    only_a = manifest.model_copy(update={"sources": manifest.sources[:1]})
    con = connect(wd, only_a)
    distinct_a = len({doc_id(normalize_text(t)) for t in corpus_texts(120, seed=2)[:80]})
    assert con.sql("select count(*) from documents").fetchall() == [(distinct_a,)]
    assert con.sql(
        "select count(distinct source_key) from instance_index join documents using (doc_id)"
    ).fetchall() == [(1,)]


def test_views_yield_one_row_per_key_whatever_the_shards_hold(tmp_path, models):
    wd, manifest = prepared_workdir(tmp_path, models, shard_documents=1000)
    manifest = manifest.model_copy(
        update={"reference": ModelRef(spec="r", path="r", fingerprint="R"), "score_variant": "v"}
    )
    con = connect(wd, manifest)
    ids = [i for (i,) in con.sql("select instance_id from instance_index where split = 'pool'").fetchall()]
    for fp in ("T", "R"):  # every candidate scored twice, in two shards (as two concurrent runs once wrote)
        table = pa.table(
            {
                "instance_id": ids,
                "n_predicted": [1] * len(ids),
                "sum_logp": [-1.0] * len(ids),
                "mean_logp": [-1.0] * len(ids),
            },
            schema=schemas.SCORE,
        )
        for copy in ("x", "y"):
            write_parquet(table, wd.partition_scores_dir(fp, "v", "s", 0) / f"{copy}.parquet")
    assert con.sql("select count(*), count(distinct instance_id) from scored").fetchall() == [(len(ids), len(ids))]
    assert con.sql(
        "select count(*) from (select model_fp, instance_id from scores group by all having count(*) > 1)"
    ).fetchall() == [(0,)]
    # a selection's members and record written twice (two runs that selected at once) still count once
    members = pa.table(
        {"selection_id": ["S"] * len(ids), "instance_id": ids, "score": [0.0] * len(ids), "n_tokens": [1] * len(ids)},
        schema=schemas.MEMBER,
    )
    write_parquet(members, wd.selected("S"))
    write_parquet(members, wd.selected("S").with_name("S-again.parquet"))
    con = connect(wd, manifest.model_copy(update={"selection_id": "S"}))
    assert con.sql("select count(*), count(distinct instance_id) from selected").fetchall() == [(len(ids), len(ids))]
    assert con.sql(
        "select count(*) from (select selection_id, instance_id from selection_members group by all "
        "having count(*) > 1)"
    ).fetchall() == [(0,)]
    assert [r[0] for r in con.sql("select rank from selected order by rank").fetchall()] == list(range(1, len(ids) + 1))


def _files_read(con, query: str) -> int:
    plan = con.sql("explain analyze " + query).fetchall()[0][1]
    return sum(int(n) for n in re.findall(r"Total Files Read: (\d+)", plan))


def test_the_shards_of_another_spec_split_or_model_are_not_read(tmp_path, models):
    """The views filter by the run's settings (the `current_run` table), and DuckDB prunes the other folders, whichever
    way the keys sort."""
    wd, manifest = prepared_workdir(tmp_path, models, shard_documents=7)
    # this run's keys and an earlier run's sort after digits (as half of all hex keys do)
    (wd.root / "instances" / f"spec={manifest.instance_spec}").rename(wd.root / "instances" / "spec=e1")
    (wd.root / "splits" / f"split_key={manifest.split_key}").rename(wd.root / "splits" / "split_key=e1")
    run = ModelRef(spec="t", path="t", fingerprint="e1"), ModelRef(spec="r", path="r", fingerprint="e2")
    manifest = manifest.model_copy(
        update={"instance_spec": "e1", "split_key": "e1", "teacher": run[0], "reference": run[1], "score_variant": "v"}
    )
    ids = [i for (i,) in connect(wd, manifest).sql("select instance_id from instance_index").fetchall()]
    for model in run:
        score = pa.table({"instance_id": ids, "n_predicted": [1] * len(ids), "sum_logp": [-1.0] * len(ids),
                          "mean_logp": [-1.0] * len(ids)}, schema=schemas.SCORE)  # fmt: skip
        write_parquet(score, wd.partition_scores_dir(model.fingerprint, "v", "s", 0) / "x.parquet")
    queries = [
        "select count(*) from instances",
        "select count(*) from splits",
        "select count(*), sum(score) from scored",
    ]
    con = connect(wd, manifest)
    before = [(con.sql(q).fetchall(), _files_read(con, q)) for q in queries]
    shutil.copytree(wd.root / "instances" / "spec=e1", wd.root / "instances" / "spec=f0")
    shutil.copytree(wd.root / "splits" / "split_key=e1", wd.root / "splits" / "split_key=f0")
    shutil.copytree(wd.scores_dir("e1", "v"), wd.scores_dir("f0", "v"))
    con = connect(wd, manifest)
    assert [(con.sql(q).fetchall(), _files_read(con, q)) for q in queries] == before
    (n_scored, score_sum), *_ = before[2][0]
    assert n_scored > 0 and score_sum == 0.0  # each candidate scored once by each model: -1 - (-1)


def _rows_scanned(con, query: str, profile: Path) -> int:
    con.execute("pragma enable_profiling = 'json'")
    con.execute(f"pragma profiling_output = '{profile}'")
    con.sql(query).fetchall()
    con.execute("pragma disable_profiling")

    def scanned(op: dict) -> int:
        return op.get("rows_scanned", 0) + sum(scanned(c) for c in op.get("children", []))

    return sum(scanned(op) for op in json.loads(profile.read_text())["operator"])


def test_the_current_selection_is_ranked_without_the_others(tmp_path, models):
    """`selected` reads and sorts the current selection's members only, however many selections were made."""
    wd, manifest = prepared_workdir(tmp_path, models, shard_documents=1000)
    ids = [i for (i,) in connect(wd, manifest).sql("select instance_id from instance_index").fetchall()]
    for sid, n in (("aa", 30), ("bb", 50), ("cc", 70)):
        scores = [float(i % 7) for i in range(n)]  # ties, broken by instance_id
        members = pa.table({"selection_id": [sid] * n, "instance_id": ids[:n], "score": scores, "n_tokens": [1] * n},
                           schema=schemas.MEMBER)  # fmt: skip
        write_parquet(members, wd.selected(sid))
    con = connect(wd, manifest.model_copy(update={"selection_id": "bb"}))
    query = "select * from selected order by rank"
    assert con.sql(query).fetchall() == con.sql(
        "select instance_id, score, rank, n_tokens from selection_members where selection_id = 'bb' order by rank"
    ).fetchall()
    assert _rows_scanned(con, query, tmp_path / "profile.json") == 50 + 1  # its members and the current_run row
