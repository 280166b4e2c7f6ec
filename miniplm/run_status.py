"""What a run of a configuration would find done in a work directory, step by step: each step asked through its own
declaration (`@produces`), with the arguments the pipeline would pass it (`miniplm status`).

A step reads what the steps before it made, so once one is to do, those after it are too (their inputs are not
known until it has run). Scoring is not a declared step (each model scores what it has not scored yet): its line
counts the candidates each model has still to score.
"""

from __future__ import annotations

from miniplm import pipeline_steps
from miniplm.config import PipelineConfig
from miniplm.data import corpus
from miniplm.data.instances import instance_spec
from miniplm.data.splits import resolve_split, split_config, split_key
from miniplm.scoring.precision_record import recorded_precision
from miniplm.scoring.scorer import SCORER_VERSION
from miniplm.selection.select import read_record, selection_id
from miniplm.store.catalog import connect, load_sql
from miniplm.store.shards import read_json
from miniplm.store.step_outputs import outputs_there
from miniplm.store.workdir import Workdir

DONE, TO_DO, OFF = "done", "to do", "off"
STEPS = ("ingest", "tokenize", "split", "reference", "precision", "score", "select", "students", "export")


def last_run_config(workdir: str) -> PipelineConfig | None:
    """The configuration the work directory's last run was started with (None before any, or from an older
    layout)."""
    path = Workdir.open(workdir).run_config
    try:
        return PipelineConfig.model_validate(read_json(path)) if path.exists() else None
    except ValueError:
        return None


def step_status(workdir: str, cfg: PipelineConfig) -> dict[str, str]:
    """Each step of the pipeline with `cfg`: done, to do, or off (not asked for)."""
    status = dict.fromkeys(STEPS, TO_DO) | {
        "students": TO_DO if cfg.student.enabled else OFF,
        "export": TO_DO if cfg.export.path else OFF,
    }
    wd = Workdir.open(workdir)
    sources = pipeline_steps.plan_sources(cfg.corpus)
    if not all(outputs_there(pipeline_steps.ingest_source, {"workdir": workdir, "source": s}) for s in sources):
        return status
    status["ingest"] = DONE
    last = pipeline_steps.previous_manifest(workdir)
    if last is None or last.teacher.spec != cfg.teacher:  # a new teacher is resolved (and fingerprinted) by a run
        return status
    sources = [s.model_copy(update={"parts": corpus.recorded_stats(wd, s.source_key).parts}) for s in sources]
    try:
        spec = instance_spec(last.teacher.path, cfg.instances.max_len)
    except OSError:  # the last run's teacher has gone from where it was
        return status
    if not outputs_there(pipeline_steps.tokenize_sources, {"workdir": workdir, "sources": sources, "spec": spec}):
        return status
    status["tokenize"] = DONE
    split = resolve_split(split_config(cfg), 0, last.split)
    if split.reference_fraction is None or not outputs_there(
        pipeline_steps.split_sources, {"workdir": workdir, "sources": sources, "key": split_key(split)}
    ):
        return status
    status["split"] = DONE
    manifest = last.model_copy(update={"sources": sources, "instance_spec": spec, "split": split,
                                       "split_key": split_key(split)})  # fmt: skip
    if outputs_there(pipeline_steps.obtain_reference, {"workdir": workdir, "manifest": manifest, "cfg": cfg.reference}):
        status["reference"] = DONE
    elif cfg.reference.spec != "train" and last.reference is not None and last.reference.spec == cfg.reference.spec:
        status["reference"] = "given: fingerprinted again by a run"  # the rest is asked about the last one's
    else:
        return status
    precision = recorded_precision(wd)
    if precision is None:
        return status
    status["precision"] = DONE
    manifest = manifest.model_copy(update={"score_variant": f"{precision.dtype}-s{SCORER_VERSION}"})
    counts = connect(wd, manifest).execute(load_sql("status_counts")).fetchall()[0]
    candidates, teacher, reference = counts[3], counts[4], counts[5]
    if teacher < candidates or reference < candidates:
        status["score"] = f"{TO_DO}: teacher {candidates - teacher:,}, reference {candidates - reference:,} candidates"
        return status
    status["score"] = DONE
    if not outputs_there(pipeline_steps.select, {"workdir": workdir, "manifest": manifest, "cfg": cfg.select}):
        return status
    status["select"] = DONE
    manifest = manifest.model_copy(update={"selection_id": selection_id(manifest, cfg.select)})
    selection = read_record(wd, manifest.selection_id)
    asked = {"workdir": workdir, "manifest": manifest, "selection": selection, "seed": cfg.split.seed}
    if cfg.student.enabled and outputs_there(pipeline_steps.train_students, asked | {"cfg": cfg.student}):
        status["students"] = DONE
    if cfg.export.path and outputs_there(pipeline_steps.export, asked | {"cfg": cfg.export}):
        status["export"] = DONE
    return status
