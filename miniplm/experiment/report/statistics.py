"""The experiment's statistics: paired differences with bootstrap and t intervals, the verdict they support, how many
seeds would decide, and the data efficiency read off the loss curves (a token of an arm's data worth N uniform tokens).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from miniplm.training.train_summary import read_train_summary

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


def seeds_to_decide(diff: dict) -> int | None:
    """Paired seeds whose 95% interval would exclude zero, were the seeds' mean difference and spread as seen."""
    per_seed = diff.get("per_seed") or []
    if len(per_seed) < 2 or float(np.mean(per_seed)) == 0:
        return None
    mean, sd, n = abs(float(np.mean(per_seed))), float(np.std(per_seed, ddof=1)), len(per_seed)
    while n < 1000 and t_half_width(sd, n) >= mean:
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
    if low is not None and low <= 0 <= high and (high - low) / 2 <= NOISE_BOUND:
        # an effect of the bound's size would have shown: what is missing is a decision on the one seen
        needed = seeds_to_decide(diff)
        return (
            f"alpha {alpha}: Difference Sampling and the uniform sample are not yet told apart on {where}: "
            f"{figures}. The seeds' interval is narrower than +-{NOISE_BOUND} (an effect of that size would have "
            f"shown) but holds zero; at the mean difference and spread seen, about {needed} paired seeds would decide "
            "it."
        )
    needed = seeds_needed(diff)
    more = f"; about {needed} paired seeds would narrow it to that" if needed else "; at least two seeds are needed"
    return (
        f"alpha {alpha}: Difference Sampling and the uniform sample could not be told apart on {where}, and the "
        f"experiment could not see an effect of +-{NOISE_BOUND} nats/token: {figures}. The seeds' interval is not "
        f"inside +-{NOISE_BOUND}{more}."
    )


def curve(summary_path: str) -> list[tuple[int, float]]:
    """(tokens trained, loss on the main evaluation set) at each evaluation during training."""
    return read_train_summary(summary_path).eval_curve()


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
