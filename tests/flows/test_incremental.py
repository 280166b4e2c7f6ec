"""Re-scoring only what is new: added, changed and removed documents; a changed teacher."""

import pyarrow.parquet as pq
import pytest

from miniplm.config import (
    CorpusConfig,
    InstanceConfig,
    PipelineConfig,
    ReferenceConfig,
    SplitConfig,
    StudentConfig,
    TrainConfig,
)
from miniplm.store.workdir import Workdir
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_harness")


def cfg_for(tmp_path, teacher, paths) -> PipelineConfig:
    return PipelineConfig(
        workdir=str(tmp_path / "wd"),
        corpus=CorpusConfig(paths=[str(p) for p in paths]),
        teacher=str(teacher),
        instances=InstanceConfig(max_len=40),
        split=SplitConfig(reference_fraction=0.15, heldout_fraction=0.05),
        reference=ReferenceConfig(
            train=TrainConfig(max_steps=5, batch_size=2), accept_weak=True
        ),  # tiny: see test_reference
        student=StudentConfig(enabled=False),
    )


def score_files(wd: Workdir, fp: str, variant: str) -> dict:
    return {p: p.stat().st_mtime_ns for p in wd.scores_dir(fp, variant).rglob("*.parquet")}


def scored_ids(paths) -> set:
    return {i for p in paths for i in pq.read_table(p).column("instance_id").to_pylist()}


def test_new_changed_removed_documents_and_a_new_teacher(tmp_path, models):
    from flows.pipeline import miniplm_pipeline
    from miniplm.store.catalog import open_readonly

    texts = corpus_texts(80, seed=7)
    base = texts[:60]
    path = write_jsonl(tmp_path / "corpus.jsonl", base)
    first = miniplm_pipeline(cfg_for(tmp_path, models["teacher"], [path]))
    wd = Workdir.open(tmp_path / "wd")
    manifest = __import__("json").loads(wd.manifest.read_text())
    t_fp, r_fp, variant = (
        manifest["teacher"]["fingerprint"],
        manifest["reference"]["fingerprint"],
        manifest["score_variant"],
    )
    before_t, before_r = score_files(wd, t_fp, variant), score_files(wd, r_fp, variant)
    con = open_readonly(wd)
    old_pool = set(r[0] for r in con.sql("select instance_id from scored").fetchall())
    old_scores = dict(con.sql("select instance_id, score from scored").fetchall())
    con.close()

    # 2nd run: 6 new documents, one changed, one removed
    changed = base[:]
    changed[3] = changed[3] + " One more sentence."
    removed_text = changed.pop(10)
    write_jsonl(path, changed + texts[60:66])
    second = miniplm_pipeline(cfg_for(tmp_path, models["teacher"], [path]))
    con = open_readonly(wd)
    pool = set(r[0] for r in con.sql("select instance_id from scored").fetchall())
    new_pool = pool - old_pool
    assert new_pool, "the new documents should add candidates"
    assert second.documents_new == 7  # 6 added + 1 changed
    assert second.instances_scored_teacher == second.instances_scored_reference == len(new_pool)
    # old shards untouched, and the new shard holds exactly the new candidates
    after_t = score_files(wd, t_fp, variant)
    assert {k: after_t[k] for k in before_t} == before_t
    assert scored_ids(set(after_t) - set(before_t)) == new_pool
    assert set(score_files(wd, r_fp, variant)) - set(before_r)
    # the removed and the old version of the changed document are no longer candidates
    gone = con.sql("select count(*) from documents where text = $t", params={"t": removed_text}).fetchall()[0][0]
    assert gone == 0
    assert len(old_pool - pool) >= 1
    # unchanged candidates keep their scores; selection was re-ranked over all candidates
    still = dict(con.sql("select instance_id, score from scored").fetchall())
    assert all(still[i] == old_scores[i] for i in old_pool & pool)
    assert second.selected == int(0.5 * (second.candidates - second.nonfinite))
    assert second.selection_id != first.selection_id
    con.close()

    # 3rd run: a new teacher (same tokenizer): only the teacher side is scored again
    third = miniplm_pipeline(cfg_for(tmp_path, models["reference"], [path]))
    assert third.instances_scored_teacher == third.candidates
    assert third.instances_scored_reference == 0
    assert third.documents_new == 0
