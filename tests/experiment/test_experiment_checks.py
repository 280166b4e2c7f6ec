"""The experiment's regime and its checks on tiny models: a student tokenizer fitted on the pool, a learning rate
tuned on the uniform arm alone, the other reference size, the sign check and the positive control, n-gram
baselines, and loss curves at each quarter of training."""

import json
from pathlib import Path

import polars as pl
import pytest

from miniplm.config import (
    CorpusConfig,
    ExperimentConfig,
    InstanceConfig,
    PipelineConfig,
    ReferenceConfig,
    SplitConfig,
    StudentConfig,
    TrainConfig,
    small_llama,
)
from miniplm.store.hashing import normalize_text
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def checked(tmp_path_factory, models, prefect_harness):
    from flows.experiment import miniplm_experiment

    tmp = tmp_path_factory.mktemp("checks")
    texts = corpus_texts(160)
    a = write_jsonl(tmp / "a.jsonl", texts[:70])
    b = write_jsonl(tmp / "b.jsonl", texts[70:140])
    target = write_jsonl(tmp / "target.jsonl", texts[140:])
    pipeline = PipelineConfig(
        workdir=str(tmp / "wd"),
        corpus=CorpusConfig(paths=[str(a), str(b)]),
        teacher=str(models["teacher"]),
        instances=InstanceConfig(max_len=48),
        split=SplitConfig(reference_fraction=0.2, heldout_fraction=0.1),
        reference=ReferenceConfig(train=TrainConfig(max_steps=12, batch_size=4, eval_interval=4), accept_weak=True),
        student=StudentConfig(
            tokenizer="train:300",
            arch=small_llama(2, 32),
            train=TrainConfig(max_steps=None, epochs=2, batch_size=4, block_size=32, eval_batches=2),
        ),
    )
    experiment = ExperimentConfig(
        arms=["miniplm", "uniform", "miniplm_strata", "miniplm_sampled", "miniplm_alt_ref", "bottom", "control"],
        seeds=1,
        control_sources=["a.jsonl"],
        learning_rates=[1e-2, 1e-4],
        target_paths=[str(target)],
        bootstrap_samples=200,
    )
    return pipeline, experiment, miniplm_experiment(pipeline, experiment)


def members(report: dict, arm: str) -> pl.DataFrame:
    """The instances an arm's students trained on (a selection's members for the miniplm arms)."""
    run = next(r for r in report["runs"] if r["arm"] == arm)
    return pl.read_parquet(run["members_path"])


def test_the_student_tokenizer_is_fitted_on_the_pool_alone(checked):
    pipeline, _, report = checked
    from miniplm.store.catalog import open_readonly
    from miniplm.store.models import load_tokenizer
    from miniplm.store.workdir import Workdir

    path = Path(report["student"]["tokenizer"])
    assert path.parent == Path(pipeline.workdir) / "models" / "student-tokenizer"
    info = json.loads((path / "miniplm_tokenizer.json").read_text())
    con = open_readonly(Workdir.open(pipeline.workdir))
    pool = con.sql("select count(*), sum(n_chars) from documents where split = 'pool'").fetchall()[0]
    assert (info["documents"], info["characters"]) == pool  # the pool's documents, not D_ref or the target
    tok = load_tokenizer(str(path))
    assert len(tok) <= 300 and report["student"]["vocab_size"] == len(tok)
    text = con.sql("select text from documents where split = 'pool' limit 1").fetchall()[0][0]
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text  # byte-level: nothing is lost


def test_the_learning_rate_is_tuned_on_the_uniform_arm_and_used_by_every_arm(checked):
    _, _, report = checked
    tried = report["tuning"]["tried"]
    assert [t["learning_rate"] for t in tried] == [1e-4, 1e-2]
    for t in tried:  # judged on held-out pool documents, re-derived from the tuning run's own evaluation
        docs = pl.read_parquet(next(Path(t["run"]).glob("eval-*.parquet"))).filter(pl.col("set") == "heldout")
        assert t["heldout_loss"] == pytest.approx(docs["sum_nll"].sum() / docs["n_predicted"].sum())
    best = min(tried, key=lambda t: t["heldout_loss"])
    assert best["chosen"] and report["tuning"]["learning_rate"] == best["learning_rate"]
    assert {r["learning_rate"] for r in report["runs"]} == {best["learning_rate"]}
    # the winner is the main experiment's uniform run itself: trained once
    assert best["run"] in {str(Path(r["summary_path"]).parent) for r in report["runs"] if r["arm"] == "uniform"}


def test_the_checks_hold_what_they_say(checked):
    pipeline, _, report = checked
    from miniplm.store.catalog import open_readonly
    from miniplm.store.workdir import Workdir

    con = open_readonly(Workdir.open(pipeline.workdir))
    k = report["selections"]["0.5"]["n_selected"]
    scored = con.sql("select instance_id, score from scored where isfinite(score)").pl()
    lowest = scored.sort(["score", "instance_id"], descending=[False, False]).head(k)
    assert set(members(report, "bottom")["instance_id"]) == set(lowest["instance_id"])
    # the control samples a.jsonl's candidates only
    control = members(report, "control")
    sources = con.sql(
        "select distinct d.source from instance_index i join documents d using (doc_id) where instance_id in "
        f"({','.join(repr(i) for i in control['instance_id'])})"
    ).fetchall()
    assert [Path(s).name for (s,) in sources] == ["a.jsonl"]
    # the other reference: trained, not chosen, and Difference Sampling with its scores
    ref = report["reference"]
    assert len(ref["candidates"]) == 2 and sum(c["chosen"] for c in ref["candidates"]) == 1
    chosen = min(ref["candidates"], key=lambda c: c["selection_loss"])
    assert chosen["chosen"]
    other = next(c for c in ref["candidates"] if not c["chosen"])
    from miniplm.store.models import model_fingerprint

    alt_fp = model_fingerprint(other["model_dir"])
    rows = con.sql(
        f"""select t.instance_id, t.mean_logp - a.mean_logp as score from scores t join scores a using (instance_id)
        join instance_index i using (instance_id)
        where t.model_fp = '{report["teacher"]["fingerprint"]}' and a.model_fp = '{alt_fp}'
        and t.variant = a.variant and i.split = 'pool'"""
    ).pl()
    top = rows.sort(["score", "instance_id"], descending=[True, False]).head(k)
    assert set(members(report, "miniplm_alt_ref")["instance_id"]) == set(top["instance_id"])
    # how much the selection depends on the reference: the share kept by both, and the scores' rank correlation
    agreement = report["selections"]["0.5"]["reference_agreement"]
    sid = report["selections"]["0.5"]["selection_id"]
    kept_sql = f"select instance_id from selection_members where selection_id = '{sid}'"
    chosen_kept = {i for (i,) in con.sql(kept_sql).fetchall()}
    assert agreement["kept"] == agreement["alt_kept"] == k
    assert agreement["kept_by_both"] == len(chosen_kept & set(top["instance_id"]))
    both = scored.join(rows.filter(pl.col("score").is_finite()), on="instance_id", suffix="_alt")
    spearman = both.select(pl.corr("score", "score_alt", method="spearman")).item()
    assert agreement["candidates"] == len(both)
    assert agreement["spearman"] == pytest.approx(spearman, abs=1e-9)
    md = Path(report["report_files"]["markdown"]).read_text()
    assert f"keeps {agreement['kept_by_both']:,} of the same {k:,} instances" in md
    gap = ref["validation_gap"]
    assert gap and all(g["gap"] == pytest.approx(g["teacher_logp"] - g["reference_logp"]) for g in gap)


def test_the_mode_arms_train_on_their_own_selections(checked):
    """miniplm_strata: the same score's top alpha of each source; miniplm_sampled: the temperature draw; each a
    selection of its own in the `selections` view, the paper's left as it was."""
    pipeline, experiment, report = checked
    from miniplm.store.catalog import open_readonly
    from miniplm.store.workdir import Workdir

    con = open_readonly(Workdir.open(pipeline.workdir))
    scored = con.sql("select scored.instance_id, scored.score, documents.source from scored join documents "
                     "using (doc_id) where isfinite(scored.score)").pl()  # fmt: skip
    expected = set()
    for source in scored["source"].unique():
        mine = scored.filter(pl.col("source") == source).sort(["score", "instance_id"], descending=[True, False])
        expected |= set(mine.head(int(0.5 * mine.height))["instance_id"])
    assert set(members(report, "miniplm_strata")["instance_id"]) == expected
    modes = con.sql("select selection_id, alpha, strata, temperature, seed, n_selected from selections "
                    "where strata = 'source' or temperature is not null order by strata").fetchall()  # fmt: skip
    assert [(m[1], m[2], m[3], m[4]) for m in modes] == [(0.5, "none", experiment.temperature, 0),
                                                         (0.5, "source", None, None)]  # fmt: skip
    sampled = set(members(report, "miniplm_sampled")["instance_id"])
    drawn = con.sql(f"select instance_id from selection_members where selection_id = '{modes[0][0]}'").fetchall()
    assert sampled == {i for (i,) in drawn} and len(sampled) == report["selections"]["0.5"]["n_selected"]
    assert sampled != set(scored.sort("score", descending=True).head(len(sampled))["instance_id"])
    titles = {a["arm"]: a["title"] for a in report["alphas"]["0.5"]["arms"]}
    assert "each source" in titles["miniplm_strata"] and "temperature" in titles["miniplm_sampled"]


def test_the_report_states_the_regime(checked):
    _, experiment, report = checked
    block = report["alphas"]["0.5"]
    for arm in block["arms"]:
        grams = arm["ngram"]["target"]
        assert grams["bigram"] < grams["unigram"] < report["student"]["uniform_loss"] + 1
        young = arm["evals"]["target"]["mean"] > grams["unigram"] - experiment.too_young_margin
        assert arm["too_young"] == young
        assert arm["tokens_per_parameter"] == pytest.approx(arm["tokens_trained"] / report["student"]["parameters"])
    too_young = [a["arm"] for a in block["arms"] if a["too_young"] and a["arm"] in ("miniplm", "uniform")]
    assert ("too young to judge the data" in block["verdict"]) == bool(too_young)
    for r in report["runs"]:  # the curve: the target at each quarter of the steps
        history = json.loads(Path(r["summary_path"]).read_text())["history"]
        evals = [h["step"] for h in history if "eval_loss" in h]
        assert len(evals) == 4 and evals[-1] == r["steps"]
        docs = pl.read_parquet(r["eval_path"]).filter(pl.col("set") == "target")
        texts = pl.read_ndjson(report["settings"]["target_paths"][0])["text"]
        assert r["nats_per_byte"]["target"] == pytest.approx(
            docs["sum_nll"].sum() / sum(len(normalize_text(t).encode()) for t in texts)
        )
    md = Path(report["report_files"]["markdown"]).read_text()
    for words in ("tokens / parameter", "unigram of its data", "Learning rate, tuned", "Reference sizes tried",
                  "sign check", "positive control", "final train loss", "a token worth (uniform tokens)",
                  "outside the embedding and head): the student is"):  # fmt: skip
        assert words in md
    for arm in block["arms"]:  # every arm beside uniform: a data efficiency read off its curves
        if arm["arm"] != "uniform":
            assert arm["data_efficiency"] is not None and len(arm["data_efficiency"]["per_seed"]) == 1
        train = [r["final_train_loss"] for r in report["runs"] if r["arm"] == arm["arm"]]
        assert arm["final_train_loss"] == pytest.approx(sum(train) / len(train))
    ref = report["reference"]
    assert 0 < ref["non_embedding_parameters"] < ref["parameters"]


def test_the_report_says_what_each_band_of_the_ranking_holds(checked):
    from miniplm.store.catalog import open_readonly
    from miniplm.store.workdir import Workdir

    pipeline, _, report = checked
    con = open_readonly(Workdir.open(pipeline.workdir))
    scored = con.sql("select scored.instance_id, scored.score, scored.n_tokens, documents.source from scored "
                     "join documents using (doc_id) where isfinite(scored.score)").pl()  # fmt: skip
    ranked = scored.sort(["score", "instance_id"], descending=[True, False]).with_row_index("rank")
    expected = (
        ranked.with_columns(band=(pl.col("rank") >= ranked.height / 2).cast(pl.Int64))  # alpha 0.5: two halves
        .group_by("band", "source")
        .agg(tokens=pl.col("n_tokens").sum().cast(pl.Int64), instances=pl.len().cast(pl.Int64))
    )
    bands = report["score_bands"]
    got = [(r["band"], r["source"], r["tokens"], r["instances"]) for r in bands["rows"]]
    assert bands["edges"] == [0.5]
    assert sorted(got) == sorted(expected.select("band", "source", "tokens", "instances").rows())
    text = Path(report["report_files"]["markdown"]).read_text()
    assert "| top 50% |" in text and "| bottom 50% |" in text
