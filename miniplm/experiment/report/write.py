"""Write the experiment's report: gather the context (models, student, evaluation sets, selections), build the
report's data and write report.json, report.md and the figures under `experiments/<id>/report/`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from miniplm.experiment.arms import StudentRun
from miniplm.experiment.report.assemble import build_report, score_bands
from miniplm.experiment.report.markdown import markdown
from miniplm.experiment.report.plots import plot_loss_curves, plot_main_loss, plot_scores_by_source
from miniplm.selection.select import SelectionRecord
from miniplm.store.shards import write_json
from miniplm.training.evaluate import EvalSet
from miniplm.training.train_summary import Evaluation


def write_report(report: dict, out_dir: Path, score_bins: list, thresholds: dict) -> dict:
    """report.json, report.md and the three PNGs in `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {
        "main": plot_main_loss(report, out_dir / "main_loss.png").name,
        "curves": plot_loss_curves(report, out_dir / "loss_curves.png").name,
        "scores": plot_scores_by_source(score_bins, thresholds, out_dir / "scores_by_source.png").name,
    }
    write_json(json.loads(json.dumps(report, default=str)), out_dir / "report.json")
    (out_dir / "report.md").write_text(markdown(report, images))
    return {"markdown": str(out_dir / "report.md"), "json": str(out_dir / "report.json"),
            **{k: str(out_dir / v) for k, v in images.items()}}  # fmt: skip


def embedding_parameters(arch_kwargs: dict, vocab: int) -> int:
    """The input embedding's and output head's parameters (one table when tied); 0 when the width is not given."""
    hidden = arch_kwargs.get("hidden_size")
    return vocab * hidden * (1 if arch_kwargs.get("tie_word_embeddings", False) else 2) if hidden else 0


def reference_context(wd, manifest) -> dict:
    """The reference as the report states it: a trained one's figures and its size outside the embedding."""
    from miniplm.store.models import load_tokenizer
    from miniplm.training.reference import reference_info

    if manifest.reference.spec != "train":
        return {"spec": manifest.reference.spec}
    info = reference_info(wd)
    if info is None:
        return {}
    reference = info.summary_json()
    kwargs = (info.arch or {}).get("kwargs", {})
    if info.parameters and kwargs.get("hidden_size"):
        vocab = len(load_tokenizer(manifest.teacher.path))
        reference["non_embedding_parameters"] = info.parameters - embedding_parameters(kwargs, vocab)
    return reference


def student_context(student, tokenizer: str) -> dict:
    """The student's shape and vocabulary, for the report's statement of the regime."""
    from miniplm.data.student_tokenizer import tokenizer_info
    from miniplm.experiment.arms import count_parameters
    from miniplm.store.models import load_tokenizer

    vocab = len(load_tokenizer(tokenizer))
    parameters = count_parameters(student.arch, tokenizer, student.train.block_size + 1)
    embedding = embedding_parameters(student.arch.kwargs, vocab)
    info = tokenizer_info(tokenizer)
    return {
        "arch": student.arch.model_dump(),
        "tokenizer": tokenizer,
        "tokenizer_kind": f"byte-level BPE fitted on the pool ({info.get('characters', 0):,} characters)"
        if info
        else "the teacher's"
        if tokenizer
        else "",
        "vocab_size": vocab,
        "uniform_loss": math.log(vocab),
        "parameters": parameters,
        "non_embedding_parameters": parameters - embedding,
        "batch_size": student.train.batch_size,
        "block_size": student.train.block_size,
        "learning_rate": student.train.learning_rate,
    }


def arm_ngrams(runs: list[StudentRun], eval_dir: Path, vocab: int) -> dict[str, dict]:
    """n-gram losses per arm data (each data key once: seeds of a fixed arm share it)."""
    from miniplm.training.ngram import ngram_losses

    out = {}
    for run in runs:
        if run.data.key not in out:
            out[run.data.key] = ngram_losses(Path(run.data.tokens_path), eval_dir, vocab)
    return out


def write_experiment_report(
    workdir: str,
    manifest,
    student,
    cfg,
    runs: list[StudentRun],
    evaluations: list[Evaluation],
    eval_set: EvalSet,
    selections: dict[float, SelectionRecord],
    harness: list[dict] | None = None,
    tuning: dict | None = None,
    skipped_arms: dict[str, str] | None = None,
) -> dict:
    """Gather the context (models, student, evaluation sets), build the report and write it under
    `experiments/<id>/report/`. Returns the report's data and the paths written."""
    from miniplm.experiment.arms import (
        alternative_reference_model,
        checkpoint_parameters,
        experiment_id,
        report_dir,
        student_tokenizer,
        training_budget,
    )
    from miniplm.scoring.precision_record import recorded_precision
    from miniplm.store.catalog import connect, load_sql
    from miniplm.store.workdir import Workdir

    wd = Workdir.open(workdir)
    eid = experiment_id(manifest, student, cfg)
    tokenizer = student_tokenizer(manifest, student)
    reference = reference_context(wd, manifest)
    reported = {alpha: s.model_dump() for alpha, s in selections.items()}  # the report's copies, with what each kept
    context = {
        "experiment_id": eid,
        "workdir": str(wd.root),
        "settings": cfg.model_dump(),
        "teacher": {
            "spec": manifest.teacher.spec,
            "fingerprint": manifest.teacher.fingerprint,
            "parameters": checkpoint_parameters(manifest.teacher.path),
        },
        "reference": reference,
        "student": student_context(student, tokenizer),
        "selections": {str(a): s for a, s in reported.items()},
        "eval_set": eval_set.model_dump(),
        "tuning": tuning,
        "skipped_arms": skipped_arms or {},
        "score_precision": precision.model_dump() if (precision := recorded_precision(wd)) else {},
    }
    con = connect(wd, manifest)
    alt = alternative_reference_model(workdir, manifest)
    for alpha, selection in reported.items():
        members = str(wd.selected(selection["selection_id"]))
        rel = con.sql(load_sql("kept_by_source"), params={"members_path": members})
        selection["by_source"] = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
        alt_run = next((r for r in runs if r.arm == "miniplm_alt_ref" and r.alpha == alpha), None)
        if alt is not None and alt_run is not None:
            params = {"members_path": members, "alt_members_path": alt_run.data.members, "alt_fp": alt.fingerprint,
                      "variant": manifest.score_variant}  # fmt: skip
            rel = con.sql(load_sql("reference_agreement"), params=params)
            selection["reference_agreement"] = dict(zip(rel.columns, rel.fetchall()[0], strict=True))
    context["score_bands"] = score_bands(con, [float(a) for a in selections])
    context["training_budget"] = {
        str(alpha): training_budget(kept.data, student)
        for alpha in selections
        if (kept := next((r for r in runs if r.arm == "miniplm" and r.alpha == alpha), None)) is not None
    }
    grams = arm_ngrams(runs, Path(eval_set.path), context["student"]["vocab_size"])
    report = build_report(runs, evaluations, context, cfg.bootstrap_samples, harness, grams, cfg.too_young_margin)
    rows = con.execute(load_sql("score_histogram_by_source"), {"bins": 40}).fetchall()
    bins = [(source, lo, hi, n) for source, _, lo, hi, n in rows]
    thresholds = {str(a): s.threshold for a, s in selections.items()}
    paths = write_report(report, report_dir(workdir, eid), bins, thresholds)
    return {**report, "report_files": paths}
