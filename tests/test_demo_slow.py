"""The README's first command, end to end, with the real SmolLM2-135M teacher. Minutes, so marked slow."""

import json
import math
import subprocess
import sys

import pytest

# Two demo runs: the first is minutes of SmolLM2 scoring on 2 cores (about 15 on the slower machines).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]


def demo(workdir) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--workdir", str(workdir), "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


def test_demo_runs_then_is_all_cache_hits(tmp_path):
    first, _ = demo(tmp_path / "demo")
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
    assert any(words in block["verdict"] for words in ("beat", "worse", "within noise", "too young to judge"))
    for arm in block["arms"]:  # students that learned more than the word counts of their own data
        assert arm["evals"]["target"]["mean"] < arm["ngram"]["target"]["unigram"] - 0.2
    assert len(first["tuning"]["tried"]) == 3
    second, printed = demo(tmp_path / "demo")
    assert set(second["steps_run"]) <= {"resolve-model", "student-tokenizer", "eval-set", "experiment-report"}
    assert second["pipeline"]["instances_scored_teacher"] == 0 and second["pipeline"]["documents_new"] == 0
    assert second["alphas"]["0.5"]["arms"][0]["evals"] == block["arms"][0]["evals"]
