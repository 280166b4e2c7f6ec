"""`miniplm experiment --preset smoke` as a user runs it: every arm and check, the real SmolLM2-135M teacher."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def test_smoke_preset_reports_what_its_students_logged(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "experiment", "--preset", "smoke", "--workdir", str(tmp_path / "w"),
         "--json"],
        capture_output=True,
        text=True,
        timeout=2000,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    ref = report["pipeline"]["reference"]
    assert ref["validation_loss"] < ref["unigram_loss"] < ref["uniform_loss"]
    block = report["alphas"]["0.5"]
    assert [a["arm"] for a in block["arms"]] == ["miniplm", "uniform", "full", "teacher_ppl", "reference_ppl", "kd",
                                                 "miniplm_alt_ref", "bottom", "control"]  # fmt: skip
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
