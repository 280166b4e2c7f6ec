"""Two identical runs started together on one work directory: one waits for the other, so every instance is scored
once and no view ever yields two rows for one key."""

import json
import subprocess
import sys

import pytest

from tests.cli_runs import miniplm
from tests.tiny import corpus_texts, write_jsonl


@pytest.mark.slow
def test_two_runs_started_together_score_each_instance_once(tmp_path, models):
    texts = corpus_texts(60, seed=5)
    a = write_jsonl(tmp_path / "a.jsonl", texts)
    wd = tmp_path / "wd"
    args = ["run", "--corpus", str(a), "--teacher", str(models["teacher"]), "--max-len", "40", "--workdir", str(wd),
            "--reference-fraction", "0.2", "--accept-weak-reference", "--reference-steps", "5", "--student-steps", "5",
            "--json"]  # fmt: skip
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=900) for run in runs]
    for run, (_, errors) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, errors
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    candidates = summaries[0]["candidates"]
    assert sum(s["instances_scored_teacher"] for s in summaries) == candidates > 0  # not 2 x candidates
    assert sum(s["instances_scored_reference"] for s in summaries) == candidates
    assert any("waiting for it to finish" in errors for _, errors in outputs)
    assert summaries[0]["selection_id"] == summaries[1]["selection_id"]
    unique = {
        "scores": "select count(*) - count(distinct (model_fp, variant, instance_id)) from scores",
        "scored": "select count(*) - count(distinct instance_id) from scored",
        "selected": "select count(*) - count(distinct instance_id) from selected",
        "members": "select count(*) - count(distinct (selection_id, instance_id)) from selection_members",
        "candidates": f"select count(*) - {candidates} from scored",
    }
    for name, query in unique.items():
        assert miniplm("sql", query, "--workdir", str(wd), "--format", "csv").stdout.splitlines()[1] == "0", name
