"""The experiment flow end to end on tiny models: every arm, paired seeds, a report whose figures are the students'
own, re-derived here from their files and, for one student, from plain torch."""

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from transformers import AutoModelForCausalLM

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
from miniplm.training.kd import flop_matched_steps
from tests.tiny import corpus_texts, tiny_task, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_harness")


def configs(tmp, models, target) -> tuple[PipelineConfig, ExperimentConfig]:
    texts = corpus_texts(120)
    a = write_jsonl(tmp / "a.jsonl", texts[:80])
    b = write_jsonl(tmp / "b.jsonl", texts[80:110])
    pipeline = PipelineConfig(
        workdir=str(tmp / "wd"),
        corpus=CorpusConfig(paths=[str(a), str(b)]),
        teacher=str(models["teacher"]),
        instances=InstanceConfig(max_len=48),
        split=SplitConfig(reference_fraction=0.2, heldout_fraction=0.1),
        reference=ReferenceConfig(train=TrainConfig(max_steps=15, batch_size=4, eval_interval=5), accept_weak=True),
        student=StudentConfig(
            tokenizer="teacher",  # Vanilla KD compares the two models' distributions token by token
            arch=small_llama(2, 32),
            train=TrainConfig(max_steps=None, epochs=1.5, batch_size=4, block_size=32, eval_interval=4),
        ),
    )
    experiment = ExperimentConfig(
        seeds=2,
        target_paths=[str(target)],
        bootstrap_samples=300,
        lm_eval_tasks=["miniplm_tiny", "no_such_task_here"],
        lm_eval_include=tiny_task(tmp),
    )
    return pipeline, experiment


@pytest.fixture(scope="module")
def result(tmp_path_factory, models, prefect_harness):
    from flows.experiment import miniplm_experiment

    tmp = tmp_path_factory.mktemp("experiment")
    texts = corpus_texts(120)
    # 10 documents of their own, and 3 that are in the corpus: those must not judge the students
    target = write_jsonl(tmp / "target.jsonl", texts[110:] + texts[:3])
    pipeline, experiment = configs(tmp, models, target)
    return pipeline, experiment, miniplm_experiment(pipeline, experiment)


def test_every_arm_trains_every_seed_under_the_same_compute(result):
    pipeline, experiment, report = result
    block = report["alphas"]["0.5"]
    arms = {a["arm"]: a for a in block["arms"]}
    assert list(arms) == ["miniplm", "uniform", "full", "teacher_ppl", "reference_ppl", "kd"]
    runs = report["runs"]
    assert len(runs) == 6 * 2
    steps = {r["steps"] for r in runs if r["arm"] != "kd"}
    assert len(steps) == 1  # same steps, schedule, batch and block for every arm but KD
    t = steps.pop()
    # T is 1.5 passes over the Difference Sampling arm's data, in rows of block_size + 1
    miniplm_tokens = arms["miniplm"]["data_tokens"]
    assert t == math.ceil(1.5 * miniplm_tokens / (4 * 32))
    kd = [r for r in runs if r["arm"] == "kd"]
    assert {r["steps"] for r in kd} == {flop_matched_steps(t, kd[0]["parameters"], report["teacher"]["parameters"])}
    # FLOPs match within what rounding the steps allows
    plain = arms["uniform"]["flops"]
    assert abs(arms["kd"]["flops"] - plain) / plain < 2 / t + 0.05
    for r in runs:  # every step trains on nearly full rows of real tokens
        assert r["tokens_trained"] > 0.8 * r["steps"] * 4 * 32


def test_report_figures_are_the_students_own(result):
    _, _, report = result
    for r in report["runs"]:
        summary = json.loads(Path(r["summary_path"]).read_text())
        assert r["steps"] == summary["steps"] and r["tokens_trained"] == summary["tokens_trained"]
        docs = pl.read_parquet(r["eval_path"])
        for name in ("target", "heldout"):
            part = docs.filter(pl.col("set") == name)
            assert r["evals"][name] == pytest.approx(part["sum_nll"].sum() / part["n_predicted"].sum(), rel=1e-12)
    for arm in report["alphas"]["0.5"]["arms"]:
        values = [r["evals"]["target"] for r in report["runs"] if r["arm"] == arm["arm"]]
        assert arm["evals"]["target"]["mean"] == pytest.approx(np.mean(values))
        assert arm["evals"]["target"]["std"] == pytest.approx(np.std(values, ddof=1))
        diff = arm["vs_uniform"].get("target")
        if arm["arm"] == "uniform":
            assert diff is None
            continue
        assert diff["ci_low"] <= diff["diff"] <= diff["ci_high"]
        assert diff["seed_ci_low"] <= diff["diff"] <= diff["seed_ci_high"] and len(diff["per_seed"]) == 2
        assert diff["diff"] == pytest.approx(np.mean(diff["per_seed"]))
        assert diff["seeds"] == 2 and diff["documents"] == 10
    block = report["alphas"]["0.5"]
    young = [a["arm"] for a in block["arms"] if a["arm"] in ("miniplm", "uniform") and a["too_young"]]
    expected = "alpha 0.5: students too young" if young else "alpha 0.5: Difference Sampling"
    assert block["verdict"].startswith(expected)


def test_lm_eval_tasks_score_every_student_and_unreachable_ones_say_so(result):
    _, _, report = result
    for r in report["runs"]:
        assert 0 <= r["evals"]["lm-eval miniplm_tiny acc"] <= 1
        stored = json.loads(next(Path(r["summary_path"]).parent.glob("lm-eval-*.json")).read_text())
        assert r["evals"]["lm-eval miniplm_tiny acc"] == stored["miniplm_tiny"]["acc"]
    assert "no_such_task_here" in report["lm_eval_unavailable"]
    for arm in report["alphas"]["0.5"]["arms"]:
        values = [r["evals"]["lm-eval miniplm_tiny acc"] for r in report["runs"] if r["arm"] == arm["arm"]]
        assert arm["evals"]["lm-eval miniplm_tiny acc"]["mean"] == pytest.approx(np.mean(values))


def test_target_documents_in_the_corpus_are_set_aside(result):
    _, _, report = result
    assert report["eval_set"]["documents"]["target"] == 10
    assert report["eval_set"]["target_set_aside"]["in_corpus"] == 3


def test_a_students_document_loss_is_plain_torch(result):
    _, _, report = result
    run = report["runs"][0]
    docs = pl.read_parquet(run["eval_path"]).filter(pl.col("set") == "target").sort("doc_id")
    from miniplm.data.sequences import read_offsets, read_tokens
    from miniplm.store.models import load_tokenizer

    eval_dir = Path(report["eval_set"]["path"])
    tokens, offsets = read_tokens(eval_dir / "tokens.bin"), read_offsets(eval_dir / "tokens.bin")
    table = pl.read_parquet(eval_dir / "documents.parquet").with_row_index()
    row = table.filter(pl.col("doc_id") == docs["doc_id"][0]).row(0, named=True)
    ids = torch.from_numpy(tokens[offsets[row["index"]] : offsets[row["index"] + 1]].astype(np.int64))
    model = AutoModelForCausalLM.from_pretrained(run["summary_path"].replace("summary.json", "model")).eval()
    total, block = 0.0, report["student"]["block_size"]
    with torch.no_grad():
        for start in range(0, len(ids) - 1, block):
            window = ids[start : start + block + 1][None]
            logp = torch.log_softmax(model(window[:, :-1]).logits.double(), -1)
            total -= float(logp.gather(-1, window[:, 1:, None]).sum())
    assert docs["sum_nll"][0] == pytest.approx(total, rel=1e-4)
    assert docs["n_predicted"][0] == len(ids) - 1
    assert load_tokenizer(report["student"]["tokenizer"]).eos_token_id == int(ids[-1])


def test_arms_hold_what_they_say(result):
    pipeline, _, report = result
    from miniplm.store.catalog import open_readonly
    from miniplm.store.workdir import Workdir

    con = open_readonly(Workdir.open(pipeline.workdir))
    members = {}
    for r in report["runs"]:
        data = next(a for a in report["alphas"]["0.5"]["arms"] if a["arm"] == r["arm"])
        assert data["data_instances"] > 0
    scored = con.sql("select instance_id, n_tokens, teacher_logp, score from scored where isfinite(score)").pl()
    sel = report["selections"]["0.5"]
    # uniform: about the tokens Difference Sampling kept, a different draw per seed
    root = Path(pipeline.workdir) / "experiments" / "data"
    for folder in root.iterdir():
        members[folder.name] = pl.read_parquet(folder / "members.parquet") if (folder / "members.parquet").exists() \
            else None  # fmt: skip
    uniform = [m for k, m in members.items() if k.startswith("uniform-")]
    assert len(uniform) == 2 and set(uniform[0]["instance_id"]) != set(uniform[1]["instance_id"])
    longest = int(scored["n_tokens"].max())
    for m in uniform:
        assert sel["selected_tokens"] - longest < m["n_tokens"].sum() <= sel["selected_tokens"]
    # the teacher's low-perplexity band: the best mean log-probs under the teacher alone
    (teacher_band,) = [m for k, m in members.items() if k.startswith("teacher_ppl-")]
    best = scored.sort(["teacher_logp", "instance_id"], descending=[True, False]).head(sel["n_selected"])
    assert set(teacher_band["instance_id"]) == set(best["instance_id"])
    (full,) = [m for k, m in members.items() if k.startswith("full-")]
    assert set(full["instance_id"]) == set(scored["instance_id"])


def test_paired_seeds_start_from_the_same_weights(tmp_path, models):
    from miniplm.data.sequences import write_sequences
    from miniplm.training.train import train_lm

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    write_sequences(a, [[5, 6, 7, 8, 0]] * 20)
    write_sequences(b, [[9, 10, 11, 0]] * 20)
    cfg = TrainConfig(max_steps=1, batch_size=2, block_size=8, learning_rate=1e-12, eval_interval=1)
    weights = []
    for name, data in (("a", a), ("b", b)):
        train_lm(tmp_path / name, small_llama(1, 32), str(models["tokenizer"]), data, cfg, layout="instances")
        weights.append(AutoModelForCausalLM.from_pretrained(tmp_path / name / "model").state_dict())
    for key in weights[0]:
        assert torch.allclose(weights[0][key], weights[1][key], atol=1e-8), key


def test_a_second_run_trains_nothing(result):
    from flows.experiment import miniplm_experiment

    pipeline, experiment, first = result
    again = miniplm_experiment(pipeline, experiment)
    assert not {"train-student", "evaluate-student", "arm-data"} & set(again["steps_run"])
    assert again["alphas"]["0.5"]["arms"][0]["evals"] == first["alphas"]["0.5"]["arms"][0]["evals"]


def test_an_alpha_sweep_is_one_parameter(tmp_path, models, prefect_harness):
    from flows.experiment import miniplm_experiment

    target = write_jsonl(tmp_path / "target.jsonl", corpus_texts(120)[110:])
    pipeline, _ = configs(tmp_path, models, target)
    # a fixed token budget: the same steps at every alpha, so the full pool's students train once
    train = pipeline.student.train.model_copy(update={"tokens_per_parameter": 0.5})
    pipeline = pipeline.model_copy(update={"student": pipeline.student.model_copy(update={"train": train})})
    sweep = ExperimentConfig(
        arms=["miniplm", "uniform", "full"], seeds=1, alphas=[0.7, 0.3], target_paths=[str(target)], learning_rates=[]
    )
    report = miniplm_experiment(pipeline, sweep)
    full = {r["alpha"]: r["summary_path"] for r in report["runs"] if r["arm"] == "full"}
    assert len(full) == 2 and len(set(full.values())) == 1
    assert list(report["alphas"]) == ["0.3", "0.7"]
    kept = {alpha: report["selections"][alpha]["n_selected"] for alpha in ("0.3", "0.7")}
    assert kept["0.3"] < kept["0.7"]
    for alpha, block in report["alphas"].items():
        assert block["verdict"].startswith(f"alpha {alpha}:")
        tokens = {a["arm"]: a["data_tokens"] for a in block["arms"]}
        assert abs(tokens["uniform"] - tokens["miniplm"]) < 0.2 * tokens["miniplm"]  # same tokens, per alpha


def test_a_pool_too_small_for_the_tokens_per_parameter_goal_trains_fewer_steps_and_says_so(models):
    """At most `max_passes` over Difference Sampling's data, whatever the tokens-per-parameter goal asks; the
    report's note says so."""
    from miniplm.experiment.arms import ArmData, count_parameters, training_budget

    train = TrainConfig(max_steps=None, tokens_per_parameter=10, max_passes=4, batch_size=4, block_size=32)
    student = StudentConfig(tokenizer=str(models["tokenizer"]), arch=small_llama(2, 32), train=train)
    parameters = count_parameters(student.arch, student.tokenizer, 33)
    small = ArmData(arm="miniplm", alpha=0.5, seed=None, key="k", members="m", instances=10, teacher_tokens=1000,
                    student_tokens=1000, tokens_path="t", composition=[])  # fmt: skip
    budget = training_budget(small, student)
    assert budget["capped"] and budget["steps"] == math.ceil(4 * 1000 / (4 * 32))
    assert "too small for the students' goal of 10 tokens per parameter" in budget["note"]
    assert f"trains {budget['steps']:,} steps instead of the goal's {math.ceil(10 * parameters / 128):,}" in (
        budget["note"])
    large = small.model_copy(update={"student_tokens": 10 * parameters})
    assert training_budget(large, student) == {"steps": math.ceil(10 * parameters / 128),
                                               "data_tokens": 10 * parameters, "capped": False}  # fmt: skip
    no_cap = student.model_copy(update={"train": train.model_copy(update={"max_passes": None})})
    assert training_budget(small, no_cap)["steps"] == math.ceil(10 * parameters / 128)
    # the default student is capped (bench/passes.py), also when a config names only some of its train settings
    named = StudentConfig.model_validate({"train": {"max_steps": None, "tokens_per_parameter": 10}})
    assert named.train.max_passes == StudentConfig().train.max_passes == 8


def test_the_experiment_id_hashes_what_it_always_did():
    """The experiment's id (and every cache keyed on it) survives the manifest's one property for the scored corpus."""
    from miniplm.experiment.arms import experiment_id
    from miniplm.store.hashing import stable_hash
    from miniplm.store.manifest import ModelRef, RunManifest, SourceRef

    manifest = RunManifest(
        sources=[SourceRef(spec="b", source_key="kb"), SourceRef(spec="a", source_key="ka")],
        instance_spec="spec",
        split=SplitConfig(),
        split_key="split",
        teacher=ModelRef(spec="t", path="t", fingerprint="T"),
        reference=ModelRef(spec="r", path="r", fingerprint="R"),
        score_variant="variant",
    )
    student, cfg = StudentConfig(), ExperimentConfig()
    before = stable_hash(
        "experiment-v1",
        "T",
        "R",
        "variant",
        "spec",
        "split",
        ["ka", "kb"],
        student.model_dump(exclude={"enabled", "uniform_baseline"}),
        cfg.model_dump(exclude={"temperature"}),
    )[:16]
    assert experiment_id(manifest, student, cfg) == before
    other = manifest.model_copy(update={"score_variant": "other"})
    assert experiment_id(other, student, cfg) != before
