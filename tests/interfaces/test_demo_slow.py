"""The README's first command, end to end, with the real SmolLM2-135M teacher, then `miniplm experiment --preset
smoke` in the same work directory as a user runs it next: every arm and check on the demo's scores. Minutes, so
marked slow."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from miniplm.config import ExperimentConfig

# Two demo runs: the first is minutes of SmolLM2 scoring on 2 cores (about 15 on the slower machines).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]


def cli(*args: str) -> tuple[dict, str]:
    result = subprocess.run([sys.executable, "-m", "flows.cli", *args, "--json"], capture_output=True, text=True,
                            timeout=1800)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory) -> tuple[Path, dict, dict]:
    """The demo run twice in one work directory, as the README's first command runs it (its own Prefect server)."""
    workdir = tmp_path_factory.mktemp("demo") / "demo"
    first, _ = cli("demo", "--workdir", str(workdir))
    second, _ = cli("demo", "--workdir", str(workdir))
    return workdir, first, second


def test_demo_runs_then_is_all_cache_hits(demo_runs):
    _, first, second = demo_runs
    run = first["pipeline"]
    assert run["quarantined"] == 3  # the messy file's broken rows
    acc = run["accounting"]
    assert sum(r["rows_read"] for r in acc) == sum(r["documents"] + r["duplicates"] + r["quarantined"] for r in acc)
    assert run["selected"] == math.floor(0.5 * (run["candidates"] - run["nonfinite"]))
    # A real teacher knows Python's documentation far better than a small reference trained on 15% of it...
    assert run["mean_teacher_logp"] > -4.0
    assert run["mean_teacher_logp"] > run["mean_ref_logp"]
    # ... and the reference has learnt something: better than a unigram model, far better than a uniform guess
    ref = run["reference"]
    assert ref["validation_loss"] < ref["unigram_loss"] < ref["uniform_loss"] - 2
    # the students: both arms over two seeds, judged on at least 50 sections of topics and modules the pool never
    # held, in a regime the report states, and one sentence saying what it shows
    assert first["main_evaluation"] == "target" and first["eval_set"]["documents"]["target"] >= 50
    block = first["alphas"]["0.5"]
    assert [a["arm"] for a in block["arms"]] == ["miniplm", "uniform"]
    for arm in block["arms"]:
        assert arm["seeds"] == 2 and all(math.isfinite(v) for v in arm["evals"]["target"]["values"])
    assert any(words in block["verdict"] for words in ("beat", "worse", "within noise", "could not be told apart",
                                                      "too young to judge"))
    for arm in block["arms"]:  # students that learned more than the word counts of their own data
        assert arm["evals"]["target"]["mean"] < arm["ngram"]["target"]["unigram"] - 0.2
    assert [t["learning_rate"] for t in first["tuning"]["tried"]] == ExperimentConfig().learning_rates
    assert set(second["steps_run"]) <= {"resolve-model", "student-tokenizer", "eval-set", "experiment-report"}
    assert second["pipeline"]["instances_scored_teacher"] == 0 and second["pipeline"]["documents_new"] == 0
    assert second["alphas"]["0.5"]["arms"][0]["evals"] == block["arms"][0]["evals"]


def test_smoke_preset_reports_what_its_students_logged(demo_runs):
    workdir, demo, _ = demo_runs
    report, _ = cli("experiment", "--preset", "smoke", "--workdir", str(workdir))
    # the demo's pipeline: nothing scored or trained again for it
    assert report["pipeline"]["instances_scored_teacher"] == report["pipeline"]["instances_scored_reference"] == 0
    assert report["pipeline"]["selection_id"] == demo["pipeline"]["selection_id"]
    ref = report["pipeline"]["reference"]
    assert ref["validation_loss"] < ref["unigram_loss"] < ref["uniform_loss"]
    block = report["alphas"]["0.5"]
    assert [a["arm"] for a in block["arms"]] == ["miniplm", "uniform", "full", "teacher_ppl", "reference_ppl", "kd",
                                                 "miniplm_strata", "miniplm_sampled", "miniplm_alt_ref", "bottom",
                                                 "control"]  # fmt: skip
    assert [t["learning_rate"] for t in report["tuning"]["tried"]] == [1e-3, 1e-2]
    for arm in block["arms"]:
        runs = [r for r in report["runs"] if r["arm"] == arm["arm"]]
        assert len(runs) == arm["seeds"] == 2
        losses = []
        for r in runs:  # the student's own files: its training log and its per-document losses
            summary = json.loads(Path(r["summary_path"]).read_text())
            assert summary["steps"] == arm["steps"] == r["steps"]
            docs = pl.read_parquet(r["eval_path"]).filter(pl.col("set") == "target")
            losses.append(docs["sum_nll"].sum() / docs["n_predicted"].sum())
        assert arm["evals"]["target"]["mean"] == pytest.approx(np.mean(losses), rel=1e-9)
        assert arm["evals"]["target"]["std"] == pytest.approx(np.std(losses, ddof=1), rel=1e-9)
    files = report["report_files"]
    for key in ("markdown", "json", "main", "curves", "scores"):
        assert Path(files[key]).stat().st_size > 0
    assert block["verdict"] in Path(files["markdown"]).read_text()
