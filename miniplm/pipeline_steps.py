"""The pipeline's steps as plain functions: paths and small typed records in, paths and small records out.

Prefect tasks (tasks/) wrap each one with caching, retries and artifacts; `flows/` composes them. Each step is
idempotent: what it writes is named by the content it came from, so a repeat finds it done.
"""

from __future__ import annotations

from pathlib import Path

from miniplm.config import (
    CorpusConfig,
    ExperimentConfig,
    ExportConfig,
    PipelineConfig,
    ReferenceConfig,
    ScoreConfig,
    SelectConfig,
    SplitConfig,
    StudentConfig,
)
from miniplm.data import corpus
from miniplm.data.instances import TokenizeStats, tokenize_parts
from miniplm.data.splits import SplitCounts, write_splits
from miniplm.experiment.arms import (
    ArmOptions,
    arm_data,
    evaluate_run,
    experiments_root,
    heldout_loss,
    pool_key,
    prepare_eval_set,
    resolve_student,
    steps_for_alpha,
    student_run,
    train_run,
)
from miniplm.scoring.partitions import (
    Partition,
    PartitionScored,
    measured_rate,
    partition_tokens,
    plan_partitions,
    score_partition,
)
from miniplm.scoring.precision import decide_precision as choose_precision
from miniplm.scoring.precision_record import PrecisionDecision, record_precision, recorded_precision
from miniplm.selection.export import HEADER, ExportError, export_selection
from miniplm.selection.export_header import ExportHeader
from miniplm.selection.report import extreme_instances, plot_histogram, score_histogram
from miniplm.selection.run_summary import RunFigures, RunSummary, ScoreQuantiles, StudentFigures
from miniplm.selection.select import (
    SelectionRecord,
    recorded,
    run_selection,
    selection_id,
)
from miniplm.store.catalog import connect, load_sql, publish_catalog
from miniplm.store.hashing import stable_hash
from miniplm.store.manifest import ModelRef, RunManifest, SourceRef
from miniplm.store.models import check_context, check_same_tokenizer, resolve_model
from miniplm.store.reference_record import ReferenceRecord, read_reference_record, write_reference_record
from miniplm.store.shards import read_json, write_json
from miniplm.store.step_outputs import produces
from miniplm.store.workdir import Workdir
from miniplm.training.reference import (
    check_quality,
    given_reference_quality,
    kept_reference_fits,
    reference_info,
    train_reference,
)


def plan_sources(cfg: CorpusConfig) -> list[SourceRef]:
    """Each input with its content key; an input given twice counts once."""
    seen, sources = set(), []
    for spec in cfg.paths:
        key = corpus.source_fingerprint(spec, cfg)
        if key not in seen:
            seen.add(key)
            sources.append(SourceRef(spec=spec, source_key=key))
    return sources


@produces(lambda workdir, source: corpus.ingested(Workdir.open(workdir), source.source_key))
def ingest_source(workdir: str, source: SourceRef, cfg: CorpusConfig) -> corpus.IngestStats:
    """Read one source into document and quarantine shards; returns its counts and number of shards."""
    return corpus.ingest(source.spec, Workdir.open(workdir), cfg, source.source_key)


def _parts(sources: list[SourceRef]) -> list[tuple[str, int]]:
    return [(s.source_key, part) for s in sources for part in range(s.parts)]


def require_documents(ingested: list[corpus.IngestStats]) -> None:
    """An empty corpus stops the run here, saying why, rather than later as an empty D_ref."""
    if sum(stats.written for stats in ingested) == 0:
        detail = "; ".join(f"{s.source}: {s.rows_read} rows, {s.quarantined} quarantined" for s in ingested)
        raise corpus.CorpusError(
            f'the corpus holds no documents ({detail}); `miniplm sql "select source, row, reason from quarantine"` '
            "shows why rows were set aside"
        )


def _instance_shards(workdir: str, sources: list[SourceRef], spec: str) -> list[tuple[Path, Path]]:
    """(documents shard, its instances shard) for every part of every source."""
    wd = Workdir.open(workdir)
    return [(wd.documents(key, part), wd.instances(spec, key, part)) for key, part in _parts(sources)]


def _split_shards(workdir: str, sources: list[SourceRef], key: str) -> list[tuple[Path, Path]]:
    """(documents shard, its split shard) for every part of every source."""
    wd = Workdir.open(workdir)
    return [(wd.documents(source_key, part), wd.splits(key, source_key, part)) for source_key, part in _parts(sources)]


@produces(lambda workdir, sources, spec: all(out.exists() for _, out in _instance_shards(workdir, sources, spec)))
def tokenize_sources(
    workdir: str, sources: list[SourceRef], tokenizer_path: str, max_len: int, spec: str
) -> TokenizeStats:
    """Cut every document shard into an instances shard (a process per shard when there are several)."""
    return tokenize_parts(_instance_shards(workdir, sources, spec), tokenizer_path, max_len, spec)


@produces(lambda workdir, sources, key: all(out.exists() for _, out in _split_shards(workdir, sources, key)))
def split_sources(workdir: str, sources: list[SourceRef], cfg: SplitConfig, key: str) -> SplitCounts:
    """D_ref, held-out or pool for every document, a split shard beside each documents shard."""
    return sum((write_splits(documents, splits, cfg) for documents, splits in _split_shards(workdir, sources, key)),
               SplitCounts())  # fmt: skip


def make_manifest(workdir: str, manifest: RunManifest) -> RunManifest:
    """Record the run's live sources and models (manifest.json, the model registry), and publish the views."""
    wd = Workdir.open(workdir)
    previous = read_json(wd.registry_file) if wd.registry_file.exists() else {}
    registry = dict(previous)
    for role, model in (("teacher", manifest.teacher), ("reference", manifest.reference)):
        if model is not None:
            registry[model.fingerprint] = {"role": role, "spec": model.spec, "path": model.path}
    if registry != previous:
        write_json(registry, wd.registry_file)
    write_json(manifest.model_dump(mode="json"), wd.manifest)
    publish_catalog(wd, manifest)
    return manifest


# a given reference is fingerprinted again every run (its file may have been replaced); its quality is kept
@produces(
    lambda workdir, manifest, cfg: cfg.spec == "train" and kept_reference_fits(Workdir.open(workdir), manifest, cfg)
)
def obtain_reference(workdir: str, manifest: RunManifest, cfg: ReferenceConfig, max_len: int) -> ModelRef:
    """Train the reference on D_ref (or take the one given), check its tokenizer, context and quality."""
    wd = Workdir.open(workdir)
    if cfg.spec == "train":
        return train_reference(wd, manifest, cfg, max_len)
    resolved = resolve_model(cfg.spec)
    ref = ModelRef(**resolved.to_dict())
    check_same_tokenizer(manifest.teacher.path, ref.path)
    check_context(ref.path, max_len, "reference")
    info_path = wd.models / "given-reference" / ref.fingerprint / "quality.json"
    info = read_reference_record(info_path)
    if info is None:
        info = given_reference_quality(wd, manifest, ref, max_len)
        write_reference_record(info, info_path)
    check_quality(info, cfg, manifest.split.reference_fraction)
    return ref


def reference_report(workdir: str, manifest: RunManifest) -> ReferenceRecord:
    """The reference's validation loss beside the uniform and unigram baselines, for the run summary."""
    wd = Workdir.open(workdir)
    ref = manifest.reference
    if ref is not None and ref.spec != "train":
        given = read_reference_record(wd.models / "given-reference" / ref.fingerprint / "quality.json")
        return given or ReferenceRecord(spec=ref.spec)
    return reference_info(wd) or ReferenceRecord()


@produces(lambda workdir: bool(recorded_precision(Workdir.open(workdir))))
def decide_precision(workdir: str, manifest: RunManifest, cfg: ScoreConfig, gpus: bool) -> PrecisionDecision:
    """The run's scoring dtype and what it was chosen from (also kept as WORKDIR/precision.json)."""
    return record_precision(workdir, choose_precision(workdir, manifest, cfg, gpus))


def plan_scoring(workdir: str, manifest: RunManifest, model: ModelRef, cfg: ScoreConfig, gpus: bool) -> list[Partition]:
    """The partitions of the candidates `model` has not scored yet (none when everything is scored)."""
    wd = Workdir.open(workdir)
    rate = measured_rate(wd, model.fingerprint, manifest.score_variant, gpus)
    size = partition_tokens(cfg, model.path, manifest.score_variant, gpus, rate)
    return plan_partitions(wd, manifest, model, manifest.score_variant, size)


def score(
    workdir: str, manifest: RunManifest, model: ModelRef, partition: Partition, cfg: ScoreConfig
) -> PartitionScored:
    return score_partition(Workdir.open(workdir), manifest, model, partition, cfg)


@produces(lambda workdir, manifest, cfg: recorded(Workdir.open(workdir), selection_id(manifest, cfg)))
def select(workdir: str, manifest: RunManifest, cfg: SelectConfig) -> SelectionRecord:
    return run_selection(Workdir.open(workdir), manifest, cfg)


def _own_export(workdir: str, cfg: ExportConfig) -> ExportHeader | None:
    """The export.json at cfg.path if it is an export of this work directory, else None."""
    header = Path(cfg.path).expanduser() / HEADER
    written = read_json(header) if header.exists() else {}
    if written.get("workdir_id") != Workdir.open(workdir).identity:
        return None
    return ExportHeader.model_validate(written | {"path": str(header.parent)})


def _exported(workdir: str, manifest: RunManifest, cfg: ExportConfig) -> bool:
    """The export at cfg.path is this work directory's, of this selection."""
    written = _own_export(workdir, cfg)
    return written is not None and written.selection.selection_id == manifest.selection_id


@produces(_exported)
def export(workdir: str, manifest: RunManifest, cfg: ExportConfig) -> ExportHeader:
    """The run's selection where a trainer reads it; the last run's export is replaced once this one is whole, and
    nothing else ever is (a folder of the user's own at `cfg.path` stops the step)."""
    if Path(cfg.path).expanduser().exists() and _own_export(workdir, cfg) is None:
        raise ExportError(
            f"export.path {cfg.path} exists and is not an export of this work directory; "
            f"remove it or choose another path (a run replaces only its own earlier export)"
        )
    return export_selection(
        workdir,
        cfg.path,
        cfg.format,
        cfg.tokenizer,
        manifest.selection_id,
        cfg.shuffle_seed,
        overwrite=True,
        val_fraction=cfg.val_fraction,
        block_size=cfg.block_size,
    )


def _students_record(workdir: str, manifest: RunManifest, selection: SelectionRecord, cfg: StudentConfig,
                     seed: int) -> Path:  # fmt: skip
    """Where the pipeline's students' figures are kept, named by all that decides them."""
    key = stable_hash("students-v1", selection.selection_id, pool_key(manifest),
                      cfg.model_dump(mode="json", exclude={"enabled"}), seed)[:16]  # fmt: skip
    return experiments_root(Workdir.open(workdir)) / "pipeline" / f"students-{key}.json"


def _recorded_students(workdir: str, manifest: RunManifest, selection: SelectionRecord, cfg: StudentConfig,
                       seed: int) -> dict[str, StudentFigures] | None:  # fmt: skip
    """The students' figures as recorded, while every student they name is still there; else None."""
    record = _students_record(workdir, manifest, selection, cfg, seed)
    if not record.exists():
        return None
    students = {arm: StudentFigures(**figures) for arm, figures in read_json(record).items()}
    return students if all(Path(s.model_dir).exists() for s in students.values() if s.model_dir) else None


@produces(lambda workdir, manifest, selection, cfg, seed: _recorded_students(workdir, manifest, selection, cfg, seed)
          is not None)  # fmt: skip
def train_students(
    workdir: str, manifest: RunManifest, selection: SelectionRecord, cfg: StudentConfig, seed: int
) -> dict[str, StudentFigures]:
    """The experiment's two arms, one seed: the same student on the kept data (miniplm) and on a seeded uniform
    sample of as many tokens (uniform), the same steps each, judged on the held-out documents."""
    recorded_students = _recorded_students(workdir, manifest, selection, cfg, seed)
    if recorded_students is not None:
        return recorded_students
    student = resolve_student(workdir, manifest, cfg)
    # a selection by token budget has no alpha: its arms are named by the fraction it kept
    kept = round(selection.n_selected / max(1, selection.n_candidates), 4)
    alpha = selection.alpha if selection.alpha is not None else kept
    plan = ExperimentConfig(arms=["miniplm", "uniform"] if cfg.uniform_baseline else ["miniplm"], alphas=[alpha])
    eval_set = prepare_eval_set(workdir, manifest, student, plan)
    judged = eval_set.documents["heldout"] > 0
    data = {arm: arm_data(workdir, manifest, arm, alpha, seed, selection, student, ArmOptions()) for arm in plan.arms}
    steps = steps_for_alpha(data["miniplm"], student)  # as configured, or from the kept data: the same for both
    results = {}
    for arm, training_data in data.items():
        tokens = training_data.student_tokens
        if tokens < 16:
            results[arm] = StudentFigures(train_tokens=tokens, skipped=f"only {tokens} tokens to train on")
            continue
        run = student_run(workdir, manifest, student, training_data, steps, seed)
        trained_run = train_run(workdir, run, student, eval_set.curve_path if judged else None)
        results[arm] = StudentFigures(
            heldout_loss=heldout_loss(evaluate_run(workdir, run, student, eval_set)) if judged else None,
            steps=trained_run.steps,
            train_tokens=tokens,
            model_dir=str(Path(run.out_dir) / "model"),
        )
    write_json({arm: figures.model_dump() for arm, figures in results.items()},
               _students_record(workdir, manifest, selection, cfg, seed))  # fmt: skip
    return results


def summarize(
    workdir: str,
    manifest: RunManifest,
    selection: SelectionRecord,
    figures: RunFigures,
    students: dict[str, StudentFigures] | None,
) -> RunSummary:
    """The run's figures: counts that add up, score quantiles, extreme instances, the reference's quality, student
    losses (also kept as WORKDIR/summary.json)."""
    wd = Workdir.open(workdir)
    con = connect(wd, manifest)
    dist = con.execute(load_sql("score_summary")).fetchall()[0]
    totals = con.execute(load_sql("corpus_totals")).fetchall()[0]
    students = students or {}
    losses = {name: s.heldout_loss for name, s in students.items()}
    summary = RunSummary(
        **figures.model_dump(),
        workdir=str(wd.root),
        documents_total=totals[0],
        instances_total=totals[1],
        quarantined=totals[2],
        candidates=selection.n_candidates,
        selected=selection.n_selected,
        selected_tokens=selection.selected_tokens,
        nonfinite=selection.n_nonfinite,
        unscored=selection.n_unscored,
        threshold=selection.threshold,
        selection_id=selection.selection_id,
        alpha=selection.alpha,
        strata=selection.strata or "none",  # (a selection recorded before the modes has neither)
        temperature=selection.temperature,
        score_variant=manifest.score_variant,
        score_quantiles=ScoreQuantiles(**dict(zip(ScoreQuantiles.model_fields, dist[3] or [None] * 5, strict=True))),
        score_min=dist[2],
        score_max=dist[4],
        mean_teacher_logp=dist[5],
        mean_ref_logp=dist[6],
        reference=reference_report(workdir, manifest),
        accounting=con.table("accounting").to_arrow_table().to_pylist(),
        extremes=extreme_instances(con, 3),
        students=students,
        heldout_loss_gain=losses["uniform"] - losses["miniplm"] if losses.get("miniplm") and losses.get("uniform")
        else None,
        # the score histogram as a picture beside the run, with the selection's threshold (`miniplm report` adds a page)
        histogram_png=str(plot_histogram(score_histogram(con), selection.threshold, wd.histogram_png)),
    )  # fmt: skip
    write_json(summary.model_dump(mode="json"), wd.summary)
    return summary


def score_bins(workdir: str, manifest: RunManifest) -> list[tuple[float, float, int]]:
    return score_histogram(connect(Workdir.open(workdir), manifest))


def extremes(workdir: str, manifest: RunManifest, n: int) -> dict[str, list[dict]]:
    return extreme_instances(connect(Workdir.open(workdir), manifest), n)


def record_config(workdir: str, config: PipelineConfig) -> None:
    """Keep the configuration a run starts with (`miniplm status` asks each step about it)."""
    write_json(config.model_dump(mode="json"), Workdir.open(workdir).run_config)


def previous_manifest(workdir: str) -> RunManifest | None:
    wd = Workdir.open(workdir)
    if not wd.manifest.exists():
        return None
    try:
        return RunManifest.model_validate(read_json(wd.manifest))
    except ValueError:  # a manifest from an older layout: nothing carries over
        return None


def count_new_documents(workdir: str, before: RunManifest | None, after: RunManifest) -> int:
    """Documents live now that no source of the previous run held (a changed text counts as new)."""
    con = connect(Workdir.open(workdir), after)
    previous = before.source_keys if before else []
    return con.execute(load_sql("new_documents"), {"previous": previous}).fetchall()[0][0]
