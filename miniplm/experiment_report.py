"""The experiment's report: per arm, the mean and spread over seeds of every evaluation, the paired difference to
the uniform arm with a bootstrap interval over target documents, compute, wall time, data composition, and plots.

Figures come from the students' own files only: each run's `summary.json` (steps, tokens, seconds, loss history)
and its per-document evaluation Parquet. Markdown and JSON say the same.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from miniplm.experiment import StudentRun, flops, passes
from miniplm.report import pyplot, save_figure
from miniplm.shards import read_json, write_json

ARM_TITLES = {
    "miniplm": "Difference Sampling (MiniPLM)",
    "uniform": "uniform sample, same tokens",
    "full": "full pool",
    "teacher_ppl": "teacher perplexity alone",
    "reference_ppl": "reference perplexity alone",
    "kd": "Vanilla KD (teacher online)",
}


def run_frame(runs: list[StudentRun], evaluations: list[dict]) -> pl.DataFrame:
    """One row per (run, evaluated document): arm, alpha, seed, set, doc_id, source, sum_nll, n_predicted."""
    frames = []
    for run, ev in zip(runs, evaluations, strict=True):
        frame = pl.read_parquet(ev["path"]).with_columns(
            arm=pl.lit(run.arm), alpha=pl.lit(run.alpha), seed=pl.lit(run.seed)
        )
        frames.append(frame)
    return pl.concat(frames)


def evaluation_losses(docs: pl.DataFrame) -> pl.DataFrame:
    """Loss (nats/token) per run and evaluation: `target`, `heldout`, and `heldout: <source file>`."""
    by_set = docs.group_by("arm", "alpha", "seed", "set").agg(
        loss=pl.col("sum_nll").sum() / pl.col("n_predicted").sum(), documents=pl.len()
    )
    heldout = docs.filter(pl.col("set") == "heldout")
    by_source = heldout.group_by("arm", "alpha", "seed", "source").agg(
        loss=pl.col("sum_nll").sum() / pl.col("n_predicted").sum(), documents=pl.len()
    )
    by_source = by_source.with_columns(
        set=pl.lit("heldout: ") + pl.col("source").map_elements(lambda s: Path(s).name, return_dtype=pl.String)
    ).drop("source")
    return pl.concat([by_set, by_source.select(by_set.columns)])


def paired_difference(docs: pl.DataFrame, arm: str, alpha: float, baseline: str, eval_set: str, samples: int,
                      seed: int = 0) -> dict | None:  # fmt: skip
    """Loss of `arm` minus loss of `baseline` on `eval_set` (nats/token), seed k paired with seed k, and a bootstrap
    95% interval over documents: resampled documents keep their per-seed differences together."""
    sel = docs.filter((pl.col("alpha") == alpha) & (pl.col("set") == eval_set))
    a = sel.filter(pl.col("arm") == arm).select("seed", "doc_id", "sum_nll", "n_predicted")
    b = sel.filter(pl.col("arm") == baseline).select("seed", "doc_id", pl.col("sum_nll").alias("base_nll"))
    joined = a.join(b, on=["seed", "doc_id"], how="inner")
    if joined.is_empty():
        return None
    per_doc = (
        joined.group_by("doc_id")
        .agg(diff=(pl.col("sum_nll") - pl.col("base_nll")).mean(), n=pl.col("n_predicted").first())
        .sort("doc_id")
    )
    diff, n = per_doc["diff"].to_numpy(), per_doc["n"].to_numpy().astype(np.float64)
    if n.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    boot = diff[idx].sum(axis=1) / np.maximum(n[idx].sum(axis=1), 1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {
        "diff": float(diff.sum() / n.sum()),
        "ci_low": float(low),
        "ci_high": float(high),
        "documents": len(diff),
        "seeds": int(joined["seed"].n_unique()),
    }


def verdict(diff: dict | None, eval_set: str, alpha: float) -> str:
    if diff is None:
        return f"alpha {alpha}: no paired comparison of Difference Sampling with the uniform sample was possible."
    where = "the target set" if eval_set == "target" else "held-out pool documents"
    figures = (
        f"{diff['diff']:+.4f} nats/token (95% CI [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}], "
        f"{diff['seeds']} paired seeds, {diff['documents']} documents)"
    )
    if diff["ci_high"] < 0:
        return f"alpha {alpha}: Difference Sampling beat the uniform sample on {where}: {figures}."
    if diff["ci_low"] > 0:
        return f"alpha {alpha}: Difference Sampling did worse than the uniform sample on {where}: {figures}."
    return f"alpha {alpha}: Difference Sampling and the uniform sample are within noise on {where}: {figures}."


def harness_scores(results: dict) -> dict[str, float]:
    """lm-eval results as evaluations named `lm-eval <task> <metric>`; unavailable tasks give none."""
    return {f"lm-eval {task} {metric}": value for task, metrics in results.items() if "unavailable" not in metrics
            for metric, value in metrics.items()}  # fmt: skip


def build_report(
    runs: list[StudentRun],
    evaluations: list[dict],
    context: dict,
    bootstrap_samples: int,
    harness: list[dict] | None = None,
) -> dict:
    """The report as JSON-able data: runs, arms (per alpha), verdicts."""
    harness = harness or [{} for _ in runs]
    docs = run_frame(runs, evaluations)
    losses = evaluation_losses(docs)
    main_set = "target" if "target" in docs["set"].unique().to_list() else "heldout"
    run_rows = []
    for run, ev, tasks in zip(runs, evaluations, harness, strict=True):
        summary = read_json(Path(run.out_dir) / "summary.json")
        mine = losses.filter((pl.col("arm") == run.arm) & (pl.col("alpha") == run.alpha) & (pl.col("seed") == run.seed))
        run_rows.append(
            {
                "arm": run.arm,
                "alpha": run.alpha,
                "seed": run.seed,
                "steps": summary["steps"],
                "tokens_trained": summary["tokens_trained"],
                "parameters": summary["parameters"],
                "flops": flops(summary["parameters"], summary["tokens_trained"], summary.get("teacher_parameters")),
                "train_seconds": summary["seconds"],
                "eval_seconds": ev["seconds"],
                "final_train_loss": summary["final_train_loss"],
                "data_instances": run.data.instances,
                "data_tokens": run.data.student_tokens,
                "passes": passes(summary["tokens_trained"], run.data.student_tokens),
                "evals": dict(zip(mine["set"].to_list(), mine["loss"].to_list(), strict=True)) | harness_scores(tasks),
                "summary_path": str(Path(run.out_dir) / "summary.json"),
                "eval_path": ev["path"],
            }
        )
    alphas = {}
    for alpha in sorted({r.alpha for r in runs}):
        arms = []
        for arm in dict.fromkeys(r.arm for r in runs if r.alpha == alpha):
            rows = [r for r in run_rows if r["arm"] == arm and r["alpha"] == alpha]
            sets = sorted({k for r in rows for k in r["evals"]}, key=lambda s: (s != "target", s != "heldout", s))
            evals = {}
            for name in sets:
                values = [r["evals"][name] for r in rows if name in r["evals"]]
                evals[name] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                    "values": values,
                }
            data = next(r.data for r in runs if r.arm == arm and r.alpha == alpha)
            arms.append(
                {
                    "arm": arm,
                    "title": ARM_TITLES[arm],
                    "seeds": len(rows),
                    "steps": rows[0]["steps"],
                    "tokens_trained": float(np.mean([r["tokens_trained"] for r in rows])),
                    "flops": float(np.mean([r["flops"] for r in rows])),
                    "train_seconds": float(np.mean([r["train_seconds"] for r in rows])),
                    "data_instances": float(np.mean([r["data_instances"] for r in rows])),
                    "data_tokens": float(np.mean([r["data_tokens"] for r in rows])),
                    "passes": float(np.mean([r["passes"] for r in rows])),
                    "evals": evals,
                    "vs_uniform": {
                        name: paired_difference(docs, arm, alpha, "uniform", name, bootstrap_samples)
                        for name in ("target", "heldout")
                        if name in sets and arm != "uniform"
                    },
                    "composition": data.composition,
                }
            )
        miniplm_vs_uniform = next((a["vs_uniform"].get(main_set) for a in arms if a["arm"] == "miniplm"), None)
        alphas[str(alpha)] = {"arms": arms, "verdict": verdict(miniplm_vs_uniform, main_set, alpha)}
    unavailable = {task: m["unavailable"] for tasks in harness for task, m in tasks.items() if "unavailable" in m}
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **context,
        "main_evaluation": main_set,
        "alphas": alphas,
        "runs": run_rows,
        "lm_eval_unavailable": unavailable,
    }


# --- plots ----------------------------------------------------------------------------------------------------------


def plot_loss_curves(report: dict, path: Path) -> Path:
    """Evaluation loss during training against training FLOPs, mean over seeds, one line per arm and alpha."""
    fig, ax = pyplot().subplots(figsize=(7, 4), dpi=120)
    groups: dict[tuple, list] = {}
    for r in report["runs"]:
        groups.setdefault((r["arm"], r["alpha"]), []).append(r)
    for (arm, alpha), rows in groups.items():
        curves = []
        for r in rows:
            history = [h for h in read_json(Path(r["summary_path"]))["history"] if "eval_loss" in h]
            curves.append([(h["tokens"] * r["flops"] / max(r["tokens_trained"], 1), h["eval_loss"]) for h in history])
        length = min(len(c) for c in curves)
        if length == 0:
            continue
        x = np.mean([[p[0] for p in c[:length]] for c in curves], axis=0)
        y = np.mean([[p[1] for p in c[:length]] for c in curves], axis=0)
        label = ARM_TITLES[arm] + (f", alpha {alpha}" if len(report["alphas"]) > 1 else "")
        ax.plot(x, y, marker=".", label=label)
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("evaluation loss (nats/token)")
    ax.legend(frameon=False, fontsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, path)


def plot_scores_by_source(bins: list[tuple[str, float, float, int]], thresholds: dict[str, float | None],
                          path: Path) -> Path:  # fmt: skip
    """The candidates' score histogram, stacked by source file, with each alpha's threshold."""
    fig, ax = pyplot().subplots(figsize=(7, 3.4), dpi=120)
    sources = sorted({b[0] for b in bins})
    edges = sorted({b[1] for b in bins})
    width = (bins[0][2] - bins[0][1]) if bins else 1.0
    bottom = dict.fromkeys(edges, 0)
    for source in sources:
        rows = [b for b in bins if b[0] == source]
        ax.bar([b[1] for b in rows], [b[3] for b in rows], width=width, align="edge",
               bottom=[bottom[b[1]] for b in rows], label=Path(source).name)  # fmt: skip
        for b in rows:
            bottom[b[1]] += b[3]
    for alpha, threshold in thresholds.items():
        if threshold is not None:
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
            ax.text(threshold, ax.get_ylim()[1] * 0.95, f" alpha {alpha}", fontsize=7)
    ax.set_xlabel("score = teacher - reference mean log-prob (nats/token)")
    ax.set_ylabel("candidates")
    ax.legend(frameon=False, fontsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, path)


def plot_main_loss(report: dict, path: Path) -> Path:
    """The main evaluation's loss per arm (and alpha), mean and standard deviation over seeds."""
    fig, ax = pyplot().subplots(figsize=(7, 3.4), dpi=120)
    labels, means, stds = [], [], []
    for alpha, block in report["alphas"].items():
        for arm in block["arms"]:
            ev = arm["evals"].get(report["main_evaluation"])
            if ev is None:
                continue
            labels.append(arm["arm"] + (f"\nalpha {alpha}" if len(report["alphas"]) > 1 else ""))
            means.append(ev["mean"])
            stds.append(ev["std"])
    ax.bar(range(len(means)), means, yerr=stds, capsize=4, color="#4c72b0")
    ax.set_xticks(range(len(means)), labels, fontsize=7)
    if means:
        spread = max(means) - min(means) + 2 * max(stds + [0.0])
        ax.set_ylim(min(means) - max(spread, 0.05), max(means) + max(spread, 0.05))
    ax.set_ylabel(f"{report['main_evaluation']} loss (nats/token)")
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, path)


# --- markdown -------------------------------------------------------------------------------------------------------


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _sci(value: float) -> str:
    return f"{value:.3g}"


def markdown(report: dict, images: dict[str, str]) -> str:
    main = report["main_evaluation"]
    ref = report.get("reference") or {}
    lines = [
        f"# MiniPLM experiment `{report['experiment_id']}`",
        "",
        *[f"**{block['verdict']}**" for block in report["alphas"].values()],
        "",
        f"Work directory `{report['workdir']}`; teacher `{report['teacher']['spec']}` "
        f"({report['teacher']['parameters']:,} parameters); reference: validation loss "
        f"{_num(ref.get('validation_loss'), 3)} nats/token vs a unigram model {_num(ref.get('unigram_loss'), 3)} and a "
        f"uniform guess {_num(ref.get('uniform_loss'), 3)}; student {report['student']['parameters']:,} parameters, "
        f"{report['student']['batch_size']} sequences of {report['student']['block_size']} tokens per step. "
        f"Main evaluation: `{main}` ({report['eval_set']['documents'].get(main, 0)} documents). Losses are nats/token "
        "(lower is better), mean ± standard deviation over seeds; the difference to the uniform arm pairs seed k with "
        "seed k, its interval is a 95% bootstrap over documents.",
        "",
    ]
    for alpha, block in report["alphas"].items():
        sets = list(dict.fromkeys(name for arm in block["arms"] for name in arm["evals"]))
        lines += [f"## alpha = {alpha}", ""]
        head = ["arm", "seeds", "steps", "tokens", "FLOPs", "passes", "train s"] + sets + [f"vs uniform ({main})"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for arm in block["arms"]:
            diff = arm["vs_uniform"].get(main)
            cells = [
                arm["title"],
                str(arm["seeds"]),
                str(arm["steps"]),
                f"{arm['tokens_trained']:,.0f}",
                _sci(arm["flops"]),
                _num(arm["passes"], 2),
                _num(arm["train_seconds"], 0),
            ]
            cells += [
                f"{arm['evals'][s]['mean']:.4f} ± {arm['evals'][s]['std']:.4f}" if s in arm["evals"] else "-"
                for s in sets
            ]
            cells.append(f"{diff['diff']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]" if diff else "-")
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "What each arm trained on (instances and teacher tokens per source):", ""]
        sources = sorted({c["source"] for arm in block["arms"] for c in arm["composition"]})
        lines += ["| arm | " + " | ".join(Path(s).name for s in sources) + " |", "|" + "---|" * (len(sources) + 1)]
        for arm in block["arms"]:
            by = {c["source"]: c for c in arm["composition"]}
            total = sum(c["tokens"] for c in arm["composition"]) or 1
            lines.append(
                f"| {arm['arm']} | "
                + " | ".join(
                    f"{by[s]['instances']} / {by[s]['tokens']:,} ({100 * by[s]['tokens'] / total:.0f}%)"
                    if s in by
                    else "-"
                    for s in sources  # fmt: skip
                )
                + " |"
            )
        lines.append("")
    if report.get("lm_eval_unavailable"):
        lines += ["lm-evaluation-harness tasks that could not run here:", ""]
        lines += [f"* `{task}`: {why}" for task, why in report["lm_eval_unavailable"].items()] + [""]
    lines += [
        "## Plots",
        "",
        f"![{main} loss by arm]({images['main']})",
        "",
        f"![evaluation loss during training]({images['curves']})",
        "",
        f"![scores by source]({images['scores']})",
        "",
    ]
    return "\n".join(lines) + "\n"


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


def write_experiment_report(
    workdir: str,
    manifest,
    student,
    cfg,
    runs: list[StudentRun],
    evaluations: list[dict],
    eval_set: dict,
    selections: dict[float, dict],
    harness: list[dict] | None = None,
) -> dict:
    """Gather the context (models, student, evaluation sets), build the report and write it under
    `experiments/<id>/report/`. Returns the report's data and the paths written."""
    from miniplm.catalog import connect, load_sql
    from miniplm.experiment import checkpoint_parameters, count_parameters, experiment_id, report_dir
    from miniplm.reference import reference_info
    from miniplm.workdir import Workdir

    wd = Workdir.open(workdir)
    eid = experiment_id(manifest, student, cfg)
    tokenizer = student.tokenizer or manifest.teacher.path
    reference = {k: v for k, v in reference_info(wd).items() if k != "arch"} if manifest.reference.spec == "train" \
        else {"spec": manifest.reference.spec}  # fmt: skip
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
        "student": {
            "arch": student.arch.model_dump(),
            "tokenizer": tokenizer,
            "parameters": count_parameters(student.arch, tokenizer, student.train.block_size + 1),
            "batch_size": student.train.batch_size,
            "block_size": student.train.block_size,
            "learning_rate": student.train.learning_rate,
        },
        "selections": {str(a): s for a, s in selections.items()},
        "eval_set": eval_set,
    }
    report = build_report(runs, evaluations, context, cfg.bootstrap_samples, harness)
    rows = connect(wd, manifest).execute(load_sql("score_histogram_by_source"), {"bins": 40}).fetchall()
    bins = [(source, lo, hi, n) for source, _, lo, hi, n in rows]
    thresholds = {str(a): s["threshold"] for a, s in selections.items()}
    paths = write_report(report, report_dir(workdir, eid), bins, thresholds)
    return {**report, "report_files": paths}
