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

from miniplm.experiment.arms import StudentRun, flops, passes
from miniplm.selection.report import pyplot, save_figure
from miniplm.store.shards import read_json, write_json

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


# two-sided 95% Student t quantiles by degrees of freedom, for the interval over paired seeds
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042}  # fmt: skip


def t_975(df: int) -> float:
    """The quantile for `df` degrees of freedom (past the table, within 0.2% of it)."""
    return T_975.get(df, 1.96 * (1 + 1.2 / df))


def t_half_width(sd: float, n: int) -> float:
    """Half the width of the 95% t interval of a mean over `n` values of standard deviation `sd`."""
    return t_975(n - 1) * sd / float(np.sqrt(n))


def paired_difference(docs: pl.DataFrame, arm: str, alpha: float, baseline: str, eval_set: str, samples: int,
                      seed: int = 0) -> dict | None:  # fmt: skip
    """Loss of `arm` minus loss of `baseline` on `eval_set` (nats/token), seed k paired with seed k, with two 95%
    intervals: a bootstrap over documents (resampled documents keep their per-seed differences together), which
    says how much the evaluation set's choice matters, and a t interval over the paired seeds' differences, which
    says how much the students' own variation does. A difference is decided only when both exclude zero."""
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
    per_seed = (
        joined.group_by("seed")
        .agg(diff=(pl.col("sum_nll") - pl.col("base_nll")).sum() / pl.col("n_predicted").sum())
        .sort("seed")["diff"]
        .to_list()
    )
    mean = float(diff.sum() / n.sum())
    seed_low = seed_high = None
    if len(per_seed) > 1:
        half = t_half_width(float(np.std(per_seed, ddof=1)), len(per_seed))
        seed_low, seed_high = mean - half, mean + half
    return {
        "diff": mean,
        "ci_low": float(low),
        "ci_high": float(high),
        "seed_ci_low": seed_low,
        "seed_ci_high": seed_high,
        "per_seed": per_seed,
        "documents": len(diff),
        "seeds": len(per_seed),
    }


def decided(diff: dict) -> int:
    """-1 (lower loss), +1 (higher) or 0 (within noise): both intervals must exclude zero on the same side; with one
    seed, only the documents' interval can be read."""
    lows = [diff["ci_low"]] + ([diff["seed_ci_low"]] if diff.get("seed_ci_low") is not None else [])
    highs = [diff["ci_high"]] + ([diff["seed_ci_high"]] if diff.get("seed_ci_high") is not None else [])
    if max(highs) < 0:
        return -1
    if min(lows) > 0:
        return 1
    return 0


NOISE_BOUND = 0.05  # nats/token: "within noise" is a verdict only when the seeds' interval is inside +-this


def seeds_needed(diff: dict, bound: float = NOISE_BOUND) -> int | None:
    """Paired seeds that would bring the seeds' 95% interval inside +-`bound` at the spread the seeds showed."""
    per_seed = diff.get("per_seed") or []
    if len(per_seed) < 2:
        return None
    sd = float(np.std(per_seed, ddof=1))
    n = len(per_seed)
    while n < 1000 and t_half_width(sd, n) > bound:
        n += 1
    return n


def verdict(diff: dict | None, eval_set: str, alpha: float, too_young: list[str] | None = None) -> str:
    if too_young:
        return (
            f"alpha {alpha}: students too young to judge the data: {', '.join(too_young)} ended within the margin of "
            "a unigram model of their own data, where only token frequencies are learned, so no better or worse is "
            "reported."
        )
    if diff is None:
        return f"alpha {alpha}: no paired comparison of Difference Sampling with the uniform sample was possible."
    where = "the target set" if eval_set == "target" else "held-out pool documents"
    seeds = (
        f", over seeds [{diff['seed_ci_low']:+.4f}, {diff['seed_ci_high']:+.4f}]"
        if diff.get("seed_ci_low") is not None
        else "; one seed, so the students' own variation is not measured"
    )
    figures = (
        f"{diff['diff']:+.4f} nats/token (95% intervals: over documents [{diff['ci_low']:+.4f}, "
        f"{diff['ci_high']:+.4f}]{seeds}; {diff['seeds']} paired seeds, {diff['documents']} documents)"
    )
    side = decided(diff)
    if side < 0:
        return f"alpha {alpha}: Difference Sampling beat the uniform sample on {where}: {figures}."
    if side > 0:
        return f"alpha {alpha}: Difference Sampling did worse than the uniform sample on {where}: {figures}."
    low, high = diff.get("seed_ci_low"), diff.get("seed_ci_high")
    if low is not None and low >= -NOISE_BOUND and high <= NOISE_BOUND:
        return f"alpha {alpha}: Difference Sampling and the uniform sample are within noise on {where}: {figures}."
    needed = seeds_needed(diff)
    more = f"; about {needed} paired seeds would narrow it to that" if needed else "; at least two seeds are needed"
    return (
        f"alpha {alpha}: Difference Sampling and the uniform sample could not be told apart on {where}, and the "
        f"experiment could not see an effect of +-{NOISE_BOUND} nats/token: {figures}. The seeds' interval is not "
        f"inside +-{NOISE_BOUND}{more}."
    )


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


def curve(summary_path: str) -> list[tuple[int, float]]:
    """(tokens trained, loss on the main evaluation set) at each evaluation during training."""
    return [(h["tokens"], h["eval_loss"]) for h in read_json(Path(summary_path))["history"] if "eval_loss" in h]


def mean_curve(rows: list[dict]) -> list[tuple[float, float]]:
    curves = [curve(r["summary_path"]) for r in rows]
    n = min((len(c) for c in curves), default=0)
    return [(float(np.mean([c[i][0] for c in curves])), float(np.mean([c[i][1] for c in curves]))) for i in range(n)]


def _tokens_to_reach(points: list[tuple[float, float]], loss: float) -> float | None:
    """Tokens at which a (falling) curve first reaches `loss`, linearly between evaluations; None if never."""
    for (t0, l0), (t1, l1) in zip(points, points[1:], strict=False):
        if l1 <= loss <= l0 and l0 != l1:
            return t0 + (l0 - loss) / (l0 - l1) * (t1 - t0)
    if points and points[0][1] <= loss:
        return None  # reached before the first evaluation: no point to read it from
    return None


def token_multiplier(arm_curve: list[tuple[float, float]], base_curve: list[tuple[float, float]]) -> dict | None:
    """How many tokens of the uniform arm one token of `arm` is worth, read off the two loss curves: when the arm
    ends lower, its tokens-to-reach the uniform arm's final loss (multiplier above 1); when it ends higher, the
    uniform arm's tokens-to-reach the arm's final loss (below 1). Bounded by the first evaluation."""
    if not arm_curve or not base_curve:
        return None
    arm_end, base_end = arm_curve[-1], base_curve[-1]
    if arm_end[1] <= base_end[1]:
        reached = _tokens_to_reach(arm_curve, base_end[1])
        if reached is None:
            return {"multiplier": None, "at_least": arm_end[0] / arm_curve[0][0]}
        return {"multiplier": base_end[0] / reached}
    reached = _tokens_to_reach(base_curve, arm_end[1])
    if reached is None:
        return {"multiplier": None, "at_most": base_curve[0][0] / arm_end[0]}
    return {"multiplier": reached / arm_end[0]}


def data_efficiency(arm_rows: list[dict], uniform_rows: list[dict]) -> dict | None:
    """A token of the arm's data is worth `multiplier` tokens of the uniform sample's, read off the mean loss curves;
    with each paired seed's own multiplier and a 95% t interval over them (on their logarithms: a ratio)."""
    if not arm_rows or not uniform_rows:
        return None
    read = token_multiplier(mean_curve(arm_rows), mean_curve(uniform_rows))
    if read is None:
        return None
    uniform_by_seed = {r["seed"]: r for r in uniform_rows}
    per_seed = []
    for row in arm_rows:
        base = uniform_by_seed.get(row["seed"])
        if base is not None:
            one = token_multiplier(curve(row["summary_path"]), curve(base["summary_path"]))
            per_seed.append(one.get("multiplier") if one else None)
    values = [m for m in per_seed if m is not None and m > 0]
    if len(values) > 1:
        logs = np.log(values)
        half = t_half_width(float(np.std(logs, ddof=1)), len(values))
        read |= {"ci_low": float(np.exp(logs.mean() - half)), "ci_high": float(np.exp(logs.mean() + half))}
    return read | {"per_seed": per_seed, "seeds_read": len(values)}


def build_report(
    runs: list[StudentRun],
    evaluations: list[dict],
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
        summary = read_json(Path(run.out_dir) / "summary.json")
        mine = losses.filter((pl.col("arm") == run.arm) & (pl.col("alpha") == run.alpha) & (pl.col("seed") == run.seed))
        sums = (docs.filter((pl.col("arm") == run.arm) & (pl.col("alpha") == run.alpha) & (pl.col("seed") == run.seed))
                .group_by("set").agg(pl.col("sum_nll").sum()).to_dicts())  # fmt: skip
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
                "tokens_per_parameter": summary["tokens_trained"] / summary["parameters"],
                "learning_rate": run.learning_rate,
                "nats_per_byte": {r["set"]: r["sum_nll"] / n_bytes[r["set"]] for r in sums if n_bytes.get(r["set"])},
                "data_key": run.data.key,
                "members_path": run.data.members,
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


def _regime(report: dict, block: dict, alpha: str) -> list[str]:
    """What training regime the students were in: tokens per parameter, passes, and their loss beside what word
    counts of their own data reach, on the same tokens."""
    main = report["main_evaluation"]
    lines = [
        *_sizes(report),
        "",
        f"| arm | tokens / parameter | passes over its data | final train loss | {main} loss | {main} - train "
        f"| unigram of its data | bigram of its data | below unigram | {main} nats/byte | a token worth (uniform "
        "tokens) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in block["arms"]:
        ev, grams = arm["evals"].get(main, {}), arm.get("ngram", {}).get(main, {})
        below = grams["unigram"] - ev["mean"] if grams and ev else None
        train = arm.get("final_train_loss")
        gap = ev["mean"] - train if ev and train is not None else None
        flag = " (too young)" if arm.get("too_young") else ""
        lines.append(
            f"| {arm['arm']}{flag} | {arm['tokens_per_parameter']:.1f} | {arm['passes']:.2f} | {_num(train)} "
            f"| {_num(ev.get('mean'))} | {_num(gap, 3)} | {_num(grams.get('unigram'))} | {_num(grams.get('bigram'))} "
            f"| {_num(below, 3)} | {_num(arm.get('nats_per_byte', {}).get(main))} "
            f"| {_efficiency(arm.get('data_efficiency')) if arm['arm'] != 'uniform' else '1'} |"
        )
    lines += ["", "A loss far below on the training data than on the evaluation set means the students memorize their "
              "data (many passes over it); the last column is read off the loss curves: the uniform sample's tokens "
              "one token of the arm's data is worth, with a 95% interval over the paired seeds."]  # fmt: skip
    budget = (report.get("training_budget") or {}).get(alpha)
    if budget and budget.get("capped"):
        lines += ["", budget["note"]]
    multiplier = block.get("token_multiplier")
    if multiplier and not block.get("too_young"):
        lines += ["", f"Read off the loss curves on `{main}`, a token of Difference Sampling's data is worth "
                  f"{_efficiency(multiplier)} tokens of the uniform sample's."]  # fmt: skip
    return lines


def _efficiency(read: dict | None) -> str:
    if not read:
        return "-"
    if read.get("multiplier") is not None:
        text = f"{read['multiplier']:.2f}"
        if read.get("ci_low") is not None:
            text += f" [{read['ci_low']:.2f}, {read['ci_high']:.2f}]"
        return text
    if read.get("at_least"):
        return f"at least {read['at_least']:.1f} (reached before the first evaluation)"
    return f"at most {read['at_most']:.2f} (reached before the first evaluation)"


def _sizes(report: dict) -> list[str]:
    """Student and reference side by side, outside the embedding (what the transformer itself holds)."""
    student, ref = report["student"], report.get("reference") or {}
    lines = [
        f"Students: {student['parameters']:,} parameters ({student.get('non_embedding_parameters', 0):,} outside the "
        f"embedding and head), vocabulary {student.get('vocab_size', 0):,} ({student.get('tokenizer_kind', '')}); "
        f"a uniform guess over it is {_num(student.get('uniform_loss'), 3)} nats/token."
    ]
    if ref.get("non_embedding_parameters") is not None:
        relation = "larger than" if student.get("non_embedding_parameters", 0) > ref["non_embedding_parameters"] else (
            "no larger than")
        lines.append(
            f"Reference: {ref['parameters']:,} parameters ({ref['non_embedding_parameters']:,} outside the embedding "
            f"and head): the student is {relation} the reference outside the embedding (the paper's students, 200M "
            "and up, are all larger than its 104M reference)."
        )
    return lines


def _interval(diff: dict | None) -> str:
    if not diff:
        return "-"
    text = f"{diff['diff']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]"
    if diff.get("seed_ci_low") is not None:
        text += f" seeds [{diff['seed_ci_low']:+.4f}, {diff['seed_ci_high']:+.4f}]"
    return text


def _kept_by_source(selection: dict | None) -> list[str]:
    """Where Difference Sampling took its data from: each source's share of the pool and of what was kept."""
    rows = (selection or {}).get("by_source") or []
    if not rows:
        return []
    pool, kept = sum(r["candidate_tokens"] for r in rows) or 1, sum(r["kept_tokens"] for r in rows) or 1
    lines = ["What Difference Sampling kept, per source (teacher tokens):", "",
             "| source | candidates | share of the pool | kept | share of the kept data | kept of its candidates |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {Path(r['source']).name} | {r['candidates']:,} | {100 * r['candidate_tokens'] / pool:.1f}% | "
            f"{r['kept']:,} | {100 * r['kept_tokens'] / kept:.1f}% | "
            f"{100 * r['kept_tokens'] / max(1, r['candidate_tokens']):.0f}% |"
        )
    return lines + [""]


def _reference_agreement(selection: dict | None) -> list[str]:
    """The ablation's first answer, before any student trains: how much of the selection the reference size decides."""
    agreement = (selection or {}).get("reference_agreement")
    if not agreement or not agreement["kept"]:
        return []
    both = agreement["kept_by_both"] / agreement["kept"]
    return [f"With the other reference size, Difference Sampling keeps {agreement['kept_by_both']:,} of the same "
            f"{agreement['kept']:,} instances ({100 * both:.0f}%); the two scores' rank correlation (Spearman) over "
            f"{agreement['candidates']:,} candidates is {_num(agreement['spearman'], 3)}. The "
            "`miniplm_alt_ref` rows below show what its students make of the difference.", ""]  # fmt: skip


def score_bands(con, alphas: list[float]) -> dict:
    """The ranking cut at the experiment's alphas (the top alpha is what that alpha keeps): per band and source,
    instances, teacher tokens and mean log-probabilities."""
    from miniplm.store.catalog import load_sql

    edges = sorted({a for a in alphas if 0 < a < 1})
    rel = con.execute(load_sql("score_bands_by_source"), {"edges": edges})
    columns = [d[0] for d in rel.description]
    return {"edges": edges, "rows": [dict(zip(columns, r, strict=True)) for r in rel.fetchall()]}


def band_names(edges: list[float]) -> list[str]:
    """top 30%, 30-50%, 50-70%, bottom 30% for the edges 0.3, 0.5, 0.7."""
    pct = [round(100 * e) for e in edges]
    if not pct:
        return ["all"]
    return [f"top {pct[0]}%"] + [f"{a}-{b}%" for a, b in zip(pct, pct[1:], strict=False)] + [f"bottom {100 - pct[-1]}%"]


def _score_bands_section(report: dict) -> list[str]:
    """Which sources each band of the ranking holds: why a selection keeps what it keeps."""
    bands = report.get("score_bands") or {}
    rows = bands.get("rows") or []
    if not rows:
        return []
    names, sources = band_names(bands["edges"]), sorted({r["source"] for r in rows})
    lines = ["What each band of the ranking holds: share of the band's teacher tokens per source, and the band's mean "
             "score (teacher minus reference log-prob, nats/token):", "",
             "| band | " + " | ".join(Path(s).name for s in sources) + " | mean score |",
             "|" + "---|" * (len(sources) + 2)]  # fmt: skip
    for band, name in enumerate(names):
        in_band = {r["source"]: r for r in rows if r["band"] == band}
        tokens = sum(r["tokens"] for r in in_band.values())
        if not tokens:
            continue
        instances = sum(r["instances"] for r in in_band.values())
        score = sum(r["score"] * r["instances"] for r in in_band.values()) / instances
        shares = [f"{100 * in_band[s]['tokens'] / tokens:.1f}%" if s in in_band else "-" for s in sources]
        lines.append(f"| {name} | " + " | ".join(shares) + f" | {score:.3f} |")
    return lines + [""]


def _reference_section(report: dict) -> list[str]:
    ref = report.get("reference") or {}
    lines = []
    if ref.get("candidates"):
        lines += ["Reference sizes tried on D_ref (the lowest validation loss kept):", "",
                  "| reference | parameters | steps | best step | passes | validation loss | kept |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for c in ref["candidates"]:
            kw = c["arch"]["kwargs"]
            lines.append(
                f"| {kw.get('hidden_size')} wide, {kw.get('num_hidden_layers')} layers | {c['parameters']:,} | "
                f"{c['steps']} | {c['best_step']} | {_num(c.get('passes'), 2)} | {_num(c['selection_loss'])} | "
                f"{'yes' if c.get('chosen') else ''} |"
            )
        lines.append("")
    if ref.get("validation_gap"):
        lines += ["Teacher and reference on D_ref's validation slice, per source (mean log-prob, nats/token; the gap "
                  "is "
                  "what Difference Sampling's score rewards):", "",
                  "| source | instances | teacher | reference | gap |", "|---|---|---|---|---|"]  # fmt: skip
        for g in ref["validation_gap"]:
            lines.append(f"| {Path(g['source']).name} | {g['instances']} | {g['teacher_logp']:.3f} | "
                         f"{g['reference_logp']:.3f} | {g['gap']:+.3f} |")  # fmt: skip
        lines.append("")
    return lines


def _tuning_section(report: dict) -> list[str]:
    tuning = report.get("tuning")
    if not tuning:
        return []
    lines = ["Learning rate, tuned on the uniform arm alone (seed 0), judged on held-out pool documents; every arm "
             "trains with the one chosen:", "", "| learning rate | held-out loss | chosen |",
             "|---|---|---|"]  # fmt: skip
    for t in tuning["tried"]:
        lines.append(f"| {t['learning_rate']:g} | {_num(t['heldout_loss'])} | {'yes' if t['chosen'] else ''} |")
    return lines + [""]


def _precision(report: dict) -> str:
    precision = report.get("score_precision") or {}
    return f"{precision['dtype']} ({precision['chosen_by']})" if precision else "the run's precision"


def markdown(report: dict, images: dict[str, str]) -> str:
    main = report["main_evaluation"]
    ref = report.get("reference") or {}
    lines = [
        f"# MiniPLM experiment `{report['experiment_id']}`",
        "",
        *[f"**{block['verdict']}**" for block in report["alphas"].values()],
        "",
        f"Work directory `{report['workdir']}`; teacher `{report['teacher']['spec']}` "
        f"({report['teacher']['parameters']:,} parameters), scored in {_precision(report)}; reference: validation loss "
        f"{_num(ref.get('validation_loss'), 3)} nats/token vs a unigram model {_num(ref.get('unigram_loss'), 3)} and a "
        f"uniform guess {_num(ref.get('uniform_loss'), 3)}; student {report['student']['parameters']:,} parameters, "
        f"{report['student']['batch_size']} sequences of {report['student']['block_size']} tokens per step, "
        f"learning rate {report['student']['learning_rate']:g}. "
        f"Main evaluation: `{main}` ({report['eval_set']['documents'].get(main, 0)} documents). Losses are nats/token "
        "(lower is better), mean ± standard deviation over seeds; the difference to the uniform arm pairs seed k with "
        "seed k; its intervals are a 95% bootstrap over documents and a 95% t interval over the paired seeds, and a "
        "difference counts only when both exclude zero.",
        "",
        *_reference_section(report),
        *_tuning_section(report),
        *_score_bands_section(report),
    ]
    for alpha, block in report["alphas"].items():
        sets = list(dict.fromkeys(name for arm in block["arms"] for name in arm["evals"]))
        selection = report["selections"].get(alpha)
        lines += [f"## alpha = {alpha}", "", *_kept_by_source(selection), *_reference_agreement(selection),
                  *_regime(report, block, alpha), ""]  # fmt: skip
        if block.get("checks"):
            lines += [f"* {c}" for c in block["checks"]] + [""]
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
            cells.append(_interval(diff))
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
    if report.get("skipped_arms"):
        lines += ["Arms that could not run:", ""] + [f"* `{a}`: {why}" for a, why in report["skipped_arms"].items()]
        lines.append("")
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
    reference = {k: v for k, v in info.items() if k != "arch"}
    kwargs = (info.get("arch") or {}).get("kwargs", {})
    if info.get("parameters") and kwargs.get("hidden_size"):
        vocab = len(load_tokenizer(manifest.teacher.path))
        reference["non_embedding_parameters"] = info["parameters"] - embedding_parameters(kwargs, vocab)
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
    evaluations: list[dict],
    eval_set: dict,
    selections: dict[float, dict],
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
    from miniplm.scoring.precision import recorded_precision
    from miniplm.store.catalog import connect, load_sql
    from miniplm.store.workdir import Workdir

    wd = Workdir.open(workdir)
    eid = experiment_id(manifest, student, cfg)
    tokenizer = student_tokenizer(manifest, student)
    reference = reference_context(wd, manifest)
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
        "selections": {str(a): s for a, s in selections.items()},
        "eval_set": eval_set,
        "tuning": tuning,
        "skipped_arms": skipped_arms or {},
        "score_precision": recorded_precision(wd),
    }
    con = connect(wd, manifest)
    alt = alternative_reference_model(workdir, manifest)
    for alpha, selection in selections.items():
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
    grams = arm_ngrams(runs, Path(eval_set["path"]), context["student"]["vocab_size"])
    report = build_report(runs, evaluations, context, cfg.bootstrap_samples, harness, grams, cfg.too_young_margin)
    rows = con.execute(load_sql("score_histogram_by_source"), {"bins": 40}).fetchall()
    bins = [(source, lo, hi, n) for source, _, lo, hi, n in rows]
    thresholds = {str(a): s["threshold"] for a, s in selections.items()}
    paths = write_report(report, report_dir(workdir, eid), bins, thresholds)
    return {**report, "report_files": paths}
