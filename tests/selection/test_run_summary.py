"""The run summary is one typed record with one description of how it reads (`sections`): every field shows
wherever the summary is shown, and what is written reads back the same."""

from __future__ import annotations

import json
import math

import pytest

from miniplm.selection.run_summary import RunSummary, markdown, read_summary, sections

STUDENT = {"heldout_loss": 4.25, "steps": 10, "train_tokens": 5120, "skipped": None, "model_dir": "/data/wd/m"}
EXTREME = {"instance_id": "ab12", "score": 1.5, "teacher_logp": -2.0, "ref_logp": -3.5, "preview": "def f(x):"}


def base() -> dict:
    return {
        "documents_new": 90,
        "rows_read": 96,
        "instances_scored_teacher": 300,
        "instances_scored_reference": 300,
        "teacher_tokens_per_s": 1234.5,
        "score_partitions": {"teacher": 2, "reference": 1},
        "score_workers": {"teacher": ["host-a"], "reference": ["host-a"]},
        "score_precision": {"dtype": "float32", "chosen_by": "as configured", "measured": None,
                            "max_drift_bound": 0.05},  # fmt: skip
        "score_attention": {"teacher": ["varlen"], "reference": ["varlen"]},
        "score_attention_fallback": None,
        "export": None,
        "steps_cached": ["split"],
        "steps_run": ["ingest", "ingest", "tokenize"],
        "step_seconds": {"ingest": 0.5, "tokenize": 1.25, "split": 0.0},
        "workdir": "/data/wd",
        "documents_total": 95,
        "instances_total": 310,
        "quarantined": 1,
        "candidates": 300,
        "selected": 150,
        "selected_tokens": 9000,
        "nonfinite": 0,
        "unscored": 0,
        "threshold": 0.75,
        "selection_id": "0123456789abcdef",
        "alpha": 0.5,
        "strata": "none",
        "temperature": None,
        "score_variant": "float32-s3",
        "score_quantiles": {"p05": -1.0, "p25": -0.5, "p50": 0.0, "p75": 0.5, "p95": 1.0},
        "score_min": -2.0,
        "score_max": 2.0,
        "mean_teacher_logp": -3.0,
        "mean_ref_logp": -4.0,
        "reference": {"trained": True, "validation_loss": 5.5, "unigram_loss": 6.5, "uniform_loss": 8.0,
                      "d_ref_tokens": 4000, "steps": 40},  # fmt: skip
        "accounting": [{"source": "/data/a.jsonl", "rows_read": 96, "documents": 95, "duplicates": 0, "quarantined": 1,
                        "in_reference": 10, "heldout": 5, "candidates": 300, "kept": 150}],  # fmt: skip
        "extremes": {"top": [EXTREME], "bottom": [EXTREME | {"instance_id": "cd34", "score": -1.5}]},
        "students": {"miniplm": STUDENT, "uniform": STUDENT | {"heldout_loss": 4.5}},
        "heldout_loss_gain": 0.25,
        "histogram_png": "/data/wd/report/scores.png",
    }


# another value for every field: a field no section shows leaves the rendered summary unchanged
OTHER = {
    "documents_new": 7,
    "rows_read": 97,
    "instances_scored_teacher": 17,
    "instances_scored_reference": 18,
    "teacher_tokens_per_s": 99.5,
    "score_partitions": {"teacher": 5, "reference": 1},
    "score_workers": {"teacher": ["ray:node-b"], "reference": ["host-a"]},
    "score_precision": {"dtype": "bfloat16", "chosen_by": "1.5x faster", "measured": None, "max_drift_bound": 0.05},
    "score_attention": {"teacher": ["per-instance sdpa"], "reference": ["varlen"]},
    "score_attention_fallback": "CUDA error",
    "export": {"path": "/out", "format": "jsonl", "instances": 150, "files": ["part-0.jsonl"]},
    "steps_cached": ["split", "ingest"],
    "steps_run": ["ingest", "tokenize"],
    "step_seconds": {"ingest": 0.75, "tokenize": 1.25, "split": 0.0},
    "workdir": "/data/other",
    "documents_total": 94,
    "instances_total": 311,
    "quarantined": 2,
    "candidates": 299,
    "selected": 149,
    "selected_tokens": 9001,
    "nonfinite": 3,
    "unscored": 4,
    "threshold": 0.8125,
    "selection_id": "fedcba9876543210",
    "alpha": 0.25,
    "strata": "source",
    "temperature": 0.5,
    "score_variant": "bfloat16-s3",
    "score_quantiles": {"p05": -1.0, "p25": -0.5, "p50": 0.125, "p75": 0.5, "p95": 1.0},
    "score_min": -2.5,
    "score_max": 2.5,
    "mean_teacher_logp": -3.25,
    "mean_ref_logp": -4.25,
    "reference": {"trained": False, "validation_loss": 5.75, "unigram_loss": 6.5, "uniform_loss": 8.0},
    "accounting": [{"source": "/data/b.jsonl", "rows_read": 96, "documents": 95, "duplicates": 0, "quarantined": 1,
                    "in_reference": 10, "heldout": 5, "candidates": 300, "kept": 150}],  # fmt: skip
    "extremes": {"top": [EXTREME | {"preview": "class C:"}], "bottom": [EXTREME]},
    "students": {"miniplm": STUDENT | {"steps": 12}},
    "heldout_loss_gain": -0.125,
    "histogram_png": "/elsewhere/scores.png",
}


def rendered(summary: dict) -> str:
    return markdown(sections(RunSummary.model_validate(summary)))


@pytest.mark.parametrize("field", sorted(RunSummary.model_fields))
def test_every_field_of_the_summary_is_shown(field):
    assert field in OTHER, f"{field}: give it another value in OTHER, and a line in run_summary.sections()"
    assert rendered(base() | {field: OTHER[field]}) != rendered(base()), f"{field}: no section shows it"


def test_the_summary_counts_the_stages_from_the_accounting():
    stages = {r["stage"]: r["count"] for r in next(p for p in sections(RunSummary(**base())) if p.key == "stages").rows}
    assert stages["rows read"] == 96 and stages["D_ref (trains the reference)"] == 10 and stages["kept"] == 150
    assert stages["scored by both models"] == 300 - 0


def test_non_finite_figures_are_written_as_null_and_read_back(tmp_path):
    summary = RunSummary(**base() | {"threshold": math.inf, "score_min": math.nan})
    assert summary.threshold is None and summary.score_min is None
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary.model_dump(mode="json")))
    assert read_summary(path) == summary
    # the reference's record is written with the keys it has, as summary.json always held it
    assert json.loads(path.read_text())["reference"] == base()["reference"]
    assert read_summary(tmp_path / "absent.json") is None
    path.write_text(json.dumps({"workdir": "/old/layout"}))
    assert read_summary(path) is None


def test_the_terminal_shows_every_section(capsys):
    from flows.cli import tables

    summary = RunSummary(**base() | {"export": OTHER["export"]})
    tables.print_summary(summary)
    printed = " ".join(capsys.readouterr().out.split())  # (a title wider than its table wraps)
    for part in sections(summary):
        assert part.title in printed
    assert "0123456789abcdef" in printed and "4.2500" in printed and "part-0.jsonl" in printed


def test_the_prepared_corpus_reads_as_the_run_summary_does(capsys):
    from flows.cli import tables
    from miniplm.selection.run_summary import PreparedSummary

    fields = {k: base()[k] for k in ("workdir", "rows_read", "documents_total", "instances_total", "quarantined",
                                     "accounting", "steps_cached", "steps_run", "step_seconds")}  # fmt: skip
    prepared = PreparedSummary(**fields, sources=1, shards=3, instance_spec="spec-abc", split_key="split-def")
    tables.print_prepared(prepared)
    printed = " ".join(capsys.readouterr().out.split())
    for text in ("Prepared corpus", "spec-abc", "split-def", "/data/a.jsonl", "Steps", "steps answered from cache"):
        assert text in printed
