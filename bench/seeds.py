"""How alike the students of one arm train: many seeds of the uniform arm and of Difference Sampling at the default
student and training settings, each seed's target loss against its arm's median, and the training curves of the
slowest and the median seed.

    python bench/seeds.py --workdir W --corpus A.jsonl --corpus B.jsonl ... --target T.jsonl \\
        [--config docs/experiment-config.json] [--seeds 8] [--plot seeds.png] [-- more experiment options]

Runs `miniplm experiment --arms miniplm,uniform --alpha 0.5 --seeds N` (its scores, reference and students are
cached in W, so a second call with more seeds trains only the new ones), then reads each student's own files.
Prints a table per arm and, last, one JSON object: per arm the target losses by seed, median, the largest excess
over the median, standard deviation (ddof 1), passes over the arm's data and the gap between the final training
loss and the target loss; `within_target` says whether every arm has no student more than 0.10 nats/token above
its median and a standard deviation of at most 0.03.
"""

from __future__ import annotations

import sys

sys.path[0] = __file__.rsplit("/bench/", 1)[0]  # the repository root, not bench/

import argparse
import json
import statistics
import subprocess
from pathlib import Path

MAX_ABOVE_MEDIAN = 0.10
MAX_STD = 0.03


def run_experiment(args: argparse.Namespace, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "flows.cli", "experiment", "--workdir", str(args.workdir), "--arms", args.arms,
               "--alpha", "0.5", "--seeds", str(args.seeds), "--json"]  # fmt: skip
    command += [a for path in args.corpus for a in ("--corpus", path)]
    command += [a for path in args.target for a in ("--target", path)]
    if args.config:
        command += ["--config", args.config]
    result = subprocess.run(command + extra, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"miniplm experiment failed (exit {result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def spread(report: dict) -> dict:
    arms = {}
    for arm in dict.fromkeys(r["arm"] for r in report["runs"]):
        runs = sorted((r for r in report["runs"] if r["arm"] == arm), key=lambda r: r["seed"])
        values = [r["evals"]["target"] for r in runs]
        median = statistics.median(values)
        train = [r["final_train_loss"] for r in runs]
        arms[arm] = {
            "seeds": len(values),
            "target": [round(v, 4) for v in values],
            "median": round(median, 4),
            "max_above_median": round(max(values) - median, 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            "mean": round(statistics.fmean(values), 4),
            "passes": round(runs[0]["passes"], 2),
            "train_target_gap": round(statistics.fmean(v - t for v, t in zip(values, train, strict=True)), 3),
            "summaries": [r["summary_path"] for r in runs],
        }
    return arms


def curves(summary_path: str) -> tuple[list[int], list[float]]:
    """A student's training loss, averaged over windows of 20 steps (one step's loss is noisy)."""
    history = json.loads(Path(summary_path).read_text())["history"]
    losses = [h["train_loss"] for h in history]
    window = 20
    steps = [history[i + window - 1]["step"] for i in range(0, len(losses) - window + 1, window)]
    means = [sum(losses[i : i + window]) / window for i in range(0, len(losses) - window + 1, window)]
    return steps, means


def plot(arms: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(arms), figsize=(6 * len(arms), 4.5), sharey=True, squeeze=False)
    for ax, (arm, figures) in zip(axes[0], arms.items(), strict=True):
        median = figures["median"]
        for seed, (summary, value) in enumerate(zip(figures["summaries"], figures["target"], strict=True)):
            steps, losses = curves(summary)
            slow = value - median > MAX_ABOVE_MEDIAN
            ax.plot(steps, losses, lw=1.6 if slow else 0.9, color="tab:red" if slow else None,
                    label=f"seed {seed}: target {value:.3f}")  # fmt: skip
        ax.set_title(f"{arm}: training loss by seed\n(red: more than {MAX_ABOVE_MEDIAN} above the median target loss)")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("training loss (nats/token, mean of 20 steps)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--corpus", action="append", required=True)
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--config", help="a JSON PipelineConfig (the student's settings among them)")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--arms", default="miniplm,uniform", help="the arms whose seeds are compared")
    parser.add_argument("--plot", type=Path, help="write the training curves of every seed here (PNG)")
    args, extra = parser.parse_known_args()
    report = run_experiment(args, [a for a in extra if a != "--"])
    arms = spread(report)
    for arm, f in arms.items():
        print(f"{arm}: target {f['target']}; median {f['median']}, largest excess {f['max_above_median']:+.4f}, "
              f"std {f['std']}; {f['passes']} passes, train-target gap {f['train_target_gap']}")  # fmt: skip
    if args.plot:
        plot(arms, args.plot)
    within = all(f["max_above_median"] <= MAX_ABOVE_MEDIAN and (f["std"] or 0) <= MAX_STD for f in arms.values())
    student = report["student"]
    print(json.dumps({
        "arms": {arm: {k: v for k, v in f.items() if k != "summaries"} for arm, f in arms.items()},
        "student": {k: student.get(k) for k in ("parameters", "non_embedding_parameters", "vocab_size",
                                                 "learning_rate", "batch_size", "block_size")},
        "steps": report["runs"][0]["steps"],
        "within_target": within,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
