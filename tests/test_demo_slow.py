"""The README's first command, end to end, with the real SmolLM2-135M teacher. Minutes, so marked slow."""

import json
import math
import subprocess
import sys

import pytest

# Two demo runs: the first is minutes of SmolLM2 scoring on 2 cores (about 15 on the slower machines).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]


def demo(workdir) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--workdir", str(workdir), "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_demo_runs_then_is_all_cache_hits(tmp_path):
    first = demo(tmp_path / "demo")
    assert first["quarantined"] == 3  # the messy file's broken rows
    acc = first["accounting"]
    assert sum(r["rows_read"] for r in acc) == sum(r["documents"] + r["duplicates"] + r["quarantined"] for r in acc)
    assert first["selected"] == math.floor(0.5 * (first["candidates"] - first["nonfinite"]))
    # A real teacher knows Python's documentation far better than a small reference trained on 15% of it...
    assert first["mean_teacher_logp"] > -4.0
    assert first["mean_teacher_logp"] > first["mean_ref_logp"]
    # ... and the reference has learnt something: better than a unigram model, far better than a uniform guess
    ref = first["reference"]
    assert ref["validation_loss"] < ref["unigram_loss"] < ref["uniform_loss"]
    for name in ("miniplm", "uniform"):
        assert math.isfinite(first["students"][name]["heldout_loss"])
    second = demo(tmp_path / "demo")
    assert set(second["steps_run"]) <= {"resolve-model"}
    assert second["instances_scored_teacher"] == 0 and second["documents_new"] == 0
    assert second["selection_id"] == first["selection_id"]
