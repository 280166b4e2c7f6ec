"""The report's data: per arm, the mean and spread over seeds of every evaluation, the paired difference to the
uniform arm, compute, wall time, data composition and the sensitivity checks, from the students' own files (each run's
`summary.json` and its per-document evaluation Parquet).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from miniplm.experiment.arms import StudentRun, flops, passes
from miniplm.experiment.report.statistics import (
    data_efficiency,
    decided,
    mean_curve,
    paired_difference,
    verdict,
)
from miniplm.training.train_summary import Evaluation, read_train_summary

ARM_TITLES = {
    "miniplm": "Difference Sampling (MiniPLM)",
    "uniform": "uniform sample, same tokens",
    "full": "full pool",
    "teacher_ppl": "teacher perplexity alone",
    "reference_ppl": "reference perplexity alone",
    "kd": "Vanilla KD (teacher online)",
    "miniplm_strata": "Difference Sampling, the top alpha of each source",
    "miniplm_sampled": "Difference Sampling, drawn with a temperature",
    "miniplm_alt_ref": "Difference Sampling, the other reference size",
    "bottom": "the lowest-scored alpha (sign check)",
    "control": "control sources only, same tokens (positive control)",
}


def run_frame(runs: list[StudentRun], evaluations: list[Evaluation]) -> pl.DataFrame:
    """One row per (run, evaluated document): arm, alpha, seed, set, doc_id, source, sum_nll, n_predicted."""
    frames = []
    for run, ev in zip(runs, evaluations, strict=True):
        frame = pl.read_parquet(ev.path).with_columns(
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


def harness_scores(results: dict) -> dict[str, float]:
    """lm-eval results as evaluations named `lm-eval <task> <metric>`; unavailable tasks give none."""
    return {f"lm-eval {task} {metric}": value for task, metrics in results.items() if "unavailable" not in metrics
            for metric, value in metrics.items()}  # fmt: skip


def bytes_per_set(docs: pl.DataFrame) -> dict[str, int]:
    one = docs.filter((pl.col("arm") == docs["arm"][0]) & (pl.col("alpha") == docs["alpha"][0])
                      & (pl.col("seed") == docs["seed"][0]))  # fmt: skip
    if "n_bytes" not in one.columns:
        return {}
    return {r["set"]: int(r["n_bytes"]) for r in one.group_by("set").agg(pl.col("n_bytes").sum()).to_dicts()}


def build_report(
    runs: list[StudentRun],
    evaluations: list[Evaluation],
    context: dict,
    bootstrap_samples: int,
    harness: list[dict] | None = None,
    ngram: dict[str, dict] | None = None,
    too_young_margin: float = 0.2,
) -> dict:
    """The report as JSON-able data: runs, arms (per alpha), verdicts. `ngram`: per arm data key, the losses of
    n-gram models fitted on that data (`miniplm.training.ngram`)."""
    harness = harness or [{} for _ in runs]
    ngram = ngram or {}
    docs = run_frame(runs, evaluations)
    n_bytes = bytes_per_set(docs)
    losses = evaluation_losses(docs)
    main_set = "target" if "target" in docs["set"].unique().to_list() else "heldout"
    run_rows = []
    for run, ev, tasks in zip(runs, evaluations, harness, strict=True):
        summary = read_train_summary(Path(run.out_dir) / "summary.json")
        mine = losses.filter((pl.col("arm") == run.arm) & (pl.col("alpha") == run.alpha) & (pl.col("seed") == run.seed))
        sums = (docs.filter((pl.col("arm") == run.arm) & (pl.col("alpha") == run.alpha) & (pl.col("seed") == run.seed))
                .group_by("set").agg(pl.col("sum_nll").sum()).to_dicts())  # fmt: skip
        run_rows.append(
            {
                "arm": run.arm,
                "alpha": run.alpha,
                "seed": run.seed,
                "steps": summary.steps,
                "tokens_trained": summary.tokens_trained,
                "parameters": summary.parameters,
                "flops": flops(summary.parameters, summary.tokens_trained, summary.teacher_parameters),
                "train_seconds": summary.seconds,
                "eval_seconds": ev.seconds,
                "final_train_loss": summary.final_train_loss,
                "data_instances": run.data.instances,
                "data_tokens": run.data.student_tokens,
                "passes": passes(summary.tokens_trained, run.data.student_tokens),
                "tokens_per_parameter": summary.tokens_trained / summary.parameters,
                "learning_rate": run.learning_rate,
                "nats_per_byte": {r["set"]: r["sum_nll"] / n_bytes[r["set"]] for r in sums if n_bytes.get(r["set"])},
                "data_key": run.data.key,
                "members_path": run.data.members,
                "evals": dict(zip(mine["set"].to_list(), mine["loss"].to_list(), strict=True)) | harness_scores(tasks),
                "summary_path": str(Path(run.out_dir) / "summary.json"),
                "eval_path": ev.path,
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
            keys = list(dict.fromkeys(r["data_key"] for r in rows))
            grams = {name: {kind: float(np.mean([ngram[k][name][kind] for k in keys if name in ngram.get(k, {})]))
                            for kind in ("unigram", "bigram")}
                     for name in sets if all(name in ngram.get(k, {}) for k in keys) and keys}  # fmt: skip
            bpb = {name: float(np.mean([r["nats_per_byte"][name] for r in rows if name in r["nats_per_byte"]]))
                   for name in sets if any(name in r["nats_per_byte"] for r in rows)}  # fmt: skip
            main_mean = evals.get(main_set, {}).get("mean")
            young = (
                main_set in grams
                and main_mean is not None
                and (main_mean > grams[main_set]["unigram"] - too_young_margin)
            )
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
                    "tokens_per_parameter": float(np.mean([r["tokens_per_parameter"] for r in rows])),
                    "learning_rate": rows[0]["learning_rate"],
                    "evals": evals,
                    "ngram": grams,
                    "nats_per_byte": bpb,
                    "too_young": bool(young),
                    "curve": mean_curve(rows),
                    "final_train_loss": float(np.mean([r["final_train_loss"] for r in rows])),
                    "vs_uniform": {
                        name: paired_difference(docs, arm, alpha, "uniform", name, bootstrap_samples)
                        for name in ("target", "heldout")
                        if name in sets and arm != "uniform"
                    },
                    "composition": data.composition,
                }
            )
        by_arm = {a["arm"]: a for a in arms}
        uniform_rows = [r for r in run_rows if r["arm"] == "uniform" and r["alpha"] == alpha]
        for arm in arms:
            if arm["arm"] != "uniform":
                mine = [r for r in run_rows if r["arm"] == arm["arm"] and r["alpha"] == alpha]
                arm["data_efficiency"] = data_efficiency(mine, uniform_rows)
        miniplm_vs_uniform = by_arm.get("miniplm", {}).get("vs_uniform", {}).get(main_set)
        too_young = [a["arm"] for a in arms if a["too_young"] and a["arm"] in ("miniplm", "uniform")]
        multiplier = by_arm.get("miniplm", {}).get("data_efficiency")
        alphas[str(alpha)] = {
            "arms": arms,
            "verdict": verdict(miniplm_vs_uniform, main_set, alpha, too_young),
            "too_young": too_young,
            "token_multiplier": multiplier,
            "checks": sensitivity_checks(by_arm, main_set),
        }
    unavailable = {task: m["unavailable"] for tasks in harness for task, m in tasks.items() if "unavailable" in m}
    return {
        "bytes": n_bytes,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **context,
        "main_evaluation": main_set,
        "alphas": alphas,
        "runs": run_rows,
        "lm_eval_unavailable": unavailable,
    }


def sensitivity_checks(by_arm: dict[str, dict], main_set: str) -> list[str]:
    """Can this experiment tell data apart? The positive control must separate from the uniform sample by much more
    than the interval's width, and the lowest-scored alpha must do worse than the highest-scored one."""
    lines = []
    control = by_arm.get("control", {}).get("vs_uniform", {}).get(main_set)
    if control:
        width = control["ci_high"] - control["ci_low"]
        if control.get("seed_ci_low") is not None:
            width = max(width, control["seed_ci_high"] - control["seed_ci_low"])
        better = decided(control) < 0
        if better and -control["diff"] > 2 * width:
            meaning = "the experiment separates target-like data from a uniform sample."
        elif better:
            meaning = ("target-like data beats the uniform sample, but by less than twice the interval's width: the "
                       "experiment separates data only coarsely, and a smaller difference may go unseen.")
        else:
            meaning = "the experiment cannot separate even target-like data from a uniform sample."
        lines.append(f"positive control vs uniform: {control['diff']:+.4f} nats/token, interval width {width:.4f}: "
                     + meaning)  # fmt: skip
    bottom, top = by_arm.get("bottom"), by_arm.get("miniplm")
    if bottom and top and main_set in bottom["evals"] and main_set in top["evals"]:
        gap = bottom["evals"][main_set]["mean"] - top["evals"][main_set]["mean"]
        lines.append(
            f"sign check: the lowest-scored alpha trains students {gap:+.4f} nats/token "
            + ("worse than the highest-scored: the score's sign carries information."
               if gap > 0 else "better than (or as good as) the highest-scored: the score ranks data the wrong way "
               "here.")
        )  # fmt: skip
    return lines


def score_bands(con, alphas: list[float]) -> dict:
    """The ranking cut at the experiment's alphas (the top alpha is what that alpha keeps): per band and source,
    instances, teacher tokens and mean log-probabilities."""
    from miniplm.store.catalog import load_sql

    edges = sorted({a for a in alphas if 0 < a < 1})
    rel = con.execute(load_sql("score_bands_by_source"), {"edges": edges})
    columns = [d[0] for d in rel.description]
    return {"edges": edges, "rows": [dict(zip(columns, r, strict=True)) for r in rel.fetchall()]}
