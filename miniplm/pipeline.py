"""The pipeline's steps as plain functions: paths and small dicts in, paths and small dicts out.

Prefect tasks (tasks/) wrap each one with caching, retries and artifacts; `flows/pipeline.py` composes them.
Each step is idempotent: what it writes is named by the content it came from, so a repeat finds it done.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pyarrow.parquet as pq

from miniplm import corpus
from miniplm.catalog import connect, load_sql, publish_catalog
from miniplm.config import PipelineConfig, ReferenceConfig, ScoreConfig, SelectConfig, SplitConfig, StudentConfig
from miniplm.export import export_members
from miniplm.hashing import stable_hash
from miniplm.instances import tokenize_shard
from miniplm.models import check_context, check_same_tokenizer, resolve_model
from miniplm.reference import reference_info, train_reference
from miniplm.score import score_missing
from miniplm.select import run_selection, uniform_sample, write_members
from miniplm.shards import read_json, write_json
from miniplm.splits import effective_split, split_key, write_splits
from miniplm.train import train_lm
from miniplm.workdir import Workdir


def ingest_source(workdir: str, spec: str, text_column: str, source_key: str) -> dict:
    wd = Workdir.open(workdir)
    if wd.ingest_stats(source_key).exists() and wd.documents(source_key).exists():
        return read_json(wd.ingest_stats(source_key))
    return asdict(corpus.ingest(spec, wd, text_column, source_key))


def tokenize_source(workdir: str, source_key: str, tokenizer_path: str, max_len: int, spec: str) -> dict:
    wd = Workdir.open(workdir)
    out = wd.instances(spec, source_key)
    stats_path = out.with_suffix(".stats.json")
    if out.exists() and stats_path.exists():
        return read_json(stats_path)
    stats = tokenize_shard(wd.documents(source_key), out, tokenizer_path, max_len, spec)
    write_json(stats, stats_path)
    return stats


def split_source(workdir: str, source_key: str, cfg: SplitConfig) -> dict:
    wd = Workdir.open(workdir)
    out = wd.splits(split_key(cfg), source_key)
    if out.exists():
        table = pq.read_table(out, columns=["split"]).column("split").to_pylist()
        return {name: table.count(name) for name in ("reference", "heldout", "pool")}
    return write_splits(wd.documents(source_key), out, cfg)


def make_manifest(
    workdir: str,
    sources: list[dict],
    instance_spec: str,
    split_cfg: SplitConfig,
    teacher: dict,
    reference: dict | None = None,
    selection_id: str | None = None,
) -> dict:
    """The run's view of the world: live sources, instance spec, split, models. Written as manifest.json."""
    wd = Workdir.open(workdir)
    previous = read_json(wd.registry_file) if wd.registry_file.exists() else {}
    registry = dict(previous)
    registry[teacher["fingerprint"]] = {"role": "teacher", "spec": teacher["spec"], "path": teacher["path"]}
    if reference:
        registry[reference["fingerprint"]] = {"role": "reference", "spec": reference["spec"], "path": reference["path"]}
    if registry != previous:
        write_json(registry, wd.registry_file)
    manifest = {
        "version": 1,
        "sources": sources,
        "instance_spec": instance_spec,
        "split": split_cfg.model_dump(),
        "split_key": split_key(split_cfg),
        "teacher": teacher,
        "reference": reference,
        "selection_id": selection_id,
    }
    write_json(manifest, wd.manifest)
    publish_catalog(wd, manifest)
    return manifest


def obtain_reference(workdir: str, manifest: dict, cfg: ReferenceConfig, max_len: int) -> dict:
    wd = Workdir.open(workdir)
    ref = train_reference(wd, manifest, cfg, max_len) if cfg.spec == "train" else resolve_model(cfg.spec)
    check_same_tokenizer(manifest["teacher"]["path"], ref.path)
    check_context(ref.path, max_len, "reference")
    return ref.to_dict()


def score_side(workdir: str, manifest: dict, model: dict, cfg: ScoreConfig, role: str) -> dict:
    return score_missing(
        Workdir.open(workdir), manifest, model["path"], model["fingerprint"], cfg, desc=f"score {role}"
    )


def select(workdir: str, manifest: dict, cfg: SelectConfig) -> dict:
    return run_selection(Workdir.open(workdir), manifest, cfg)


def train_students(workdir: str, manifest: dict, selection: dict, cfg: StudentConfig, seed: int) -> dict:
    """The same student on the kept data and on a uniform sample of the same size; held-out loss for both."""
    wd = Workdir.open(workdir)
    con = connect(wd, manifest)
    tokenizer = cfg.tokenizer or manifest["teacher"]["path"]
    sid = selection["selection_id"]
    # (members, export directory) per training set; the uniform sample is drawn once and kept beside its export
    sets = {"miniplm": (wd.selected(sid), wd.export_dir(sid))}
    if cfg.uniform_baseline:
        uniform_dir = wd.export_dir(f"uniform-{sid}-s{seed}")
        sets["uniform"] = (uniform_dir / "members.parquet", uniform_dir)
        if not sets["uniform"][0].exists():
            uniform_sample(con, selection["n_selected"], seed, sets["uniform"][0], uniform_dir.name)
    # the held-out set changes with the corpus, so its export is named by the live sources too
    heldout_key = stable_hash(
        manifest["split_key"], manifest["instance_spec"], sorted(s["source_key"] for s in manifest["sources"])
    )[:16]
    heldout_dir = wd.export_dir(f"heldout-{heldout_key}")
    heldout_members = heldout_dir / "members.parquet"
    if not heldout_members.exists():
        write_members(con, load_sql("heldout_members"), {}, heldout_members)
    has_heldout = con.execute("select count(*) from read_parquet($p)", {"p": str(heldout_members)}).fetchall()[0][0]
    heldout_export = export_members(wd, manifest, heldout_members, heldout_dir, tokenizer) if has_heldout else None
    results = {}
    for name, (members, export_dir) in sets.items():
        export = export_members(wd, manifest, members, export_dir, tokenizer)
        if export["student_tokens"] < 16:
            results[name] = {"skipped": f"only {export['student_tokens']} tokens to train on", "export": export}
            continue
        summary = train_lm(
            wd.student_dir(f"{name}-{sid}"),
            cfg.arch,
            tokenizer,
            Path(export["tokens_path"]),
            cfg.train,
            Path(heldout_export["tokens_path"]) if heldout_export else None,
            max_positions=cfg.train.block_size,
            desc=f"train student ({name})",
        )
        results[name] = {k: v for k, v in summary.items() if k not in {"history", "run_key"}} | {"export": export}
    return results


def summarize(workdir: str, manifest: dict, selection: dict, counts: dict, students: dict | None) -> dict:
    """The run's figures: counts that add up, score quantiles, extreme instances, student losses."""
    wd = Workdir.open(workdir)
    con = connect(wd, manifest)
    dist = con.execute(load_sql("score_summary")).fetchall()[0]
    quantiles = dict(zip(("p05", "p25", "p50", "p75", "p95"), dist[3] or [None] * 5, strict=True))
    accounting = con.sql("select * from accounting").to_arrow_table().to_pylist()
    extremes = {}
    for label, order in (("top", "desc"), ("bottom", "asc")):
        rows = con.sql(
            f"select s.instance_id, s.score, s.teacher_logp, s.ref_logp, left(d.text, 160) as preview "
            f"from scored s join documents d using (doc_id) where isfinite(s.score) "
            f"order by s.score {order}, s.instance_id limit 3"
        ).fetchall()
        extremes[label] = [
            dict(zip(("instance_id", "score", "teacher_logp", "ref_logp", "preview"), r, strict=True)) for r in rows
        ]
    totals = con.execute(
        "select (select count(*) from documents), (select count(*) from instance_index), "
        "(select count(*) from quarantine)"
    ).fetchall()[0]
    summary = {
        "workdir": str(wd.root),
        "documents_total": totals[0],
        "instances_total": totals[1],
        "quarantined": totals[2],
        **counts,
        "candidates": selection["n_candidates"],
        "selected": selection["n_selected"],
        "selected_tokens": selection["selected_tokens"],
        "nonfinite": selection["n_nonfinite"],
        "threshold": selection["threshold"],
        "selection_id": selection["selection_id"],
        "alpha": selection["alpha"],
        "score_quantiles": quantiles,
        "score_min": dist[2],
        "score_max": dist[4],
        "mean_teacher_logp": dist[5],
        "mean_ref_logp": dist[6],
        "reference": reference_info(wd) or {"spec": manifest["reference"]["spec"]},
        "accounting": accounting,
        "extremes": extremes,
        "students": {
            name: {
                "heldout_loss": s.get("final_eval_loss"),
                "steps": s.get("steps"),
                "train_tokens": s.get("export", {}).get("student_tokens"),
                "skipped": s.get("skipped"),
            }
            for name, s in (students or {}).items()
        },
    }
    if summary["students"].get("miniplm", {}).get("heldout_loss") and summary["students"].get("uniform", {}).get(
        "heldout_loss"
    ):
        summary["heldout_loss_gain"] = (
            summary["students"]["uniform"]["heldout_loss"] - summary["students"]["miniplm"]["heldout_loss"]
        )
    summary = json.loads(json.dumps(summary, default=str))  # plain JSON types (NaN-safe below)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}


def plan_sources(cfg: PipelineConfig) -> list[dict]:
    """Each input with its content key; an input given twice counts once."""
    seen, sources = set(), []
    for spec in cfg.corpus.paths:
        key = corpus.source_fingerprint(spec, cfg.corpus.text_column)
        if key not in seen:
            seen.add(key)
            sources.append({"spec": spec, "source_key": key})
    return sources


def effective_split_for(cfg: PipelineConfig) -> SplitConfig:
    return effective_split(cfg.split, cfg.reference.spec == "train")


def previous_manifest(workdir: str) -> dict | None:
    wd = Workdir.open(workdir)
    return read_json(wd.manifest) if wd.manifest.exists() else None


def count_new_documents(workdir: str, before: dict | None, after: dict) -> int:
    """Documents live now that were not live in the previous run (a changed text counts as new)."""
    wd = Workdir.open(workdir)
    con = connect(wd, after)
    if not before or not before.get("sources"):
        return con.execute("select count(*) from documents").fetchall()[0][0]
    old = [str(wd.documents(s["source_key"])) for s in before["sources"] if wd.documents(s["source_key"]).exists()]
    if not old:
        return con.execute("select count(*) from documents").fetchall()[0][0]
    return con.execute(
        "select count(*) from documents anti join read_parquet($old) as old using (doc_id)", {"old": old}
    ).fetchall()[0][0]
