"""The report's three figures: target loss by arm, evaluation loss during training, scores by source."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from miniplm.experiment.report.assemble import ARM_TITLES
from miniplm.selection.report import pyplot, save_figure
from miniplm.training.train_summary import read_train_summary


def plot_loss_curves(report: dict, path: Path) -> Path:
    """Evaluation loss during training against training FLOPs, mean over seeds, one line per arm and alpha."""
    fig, ax = pyplot().subplots(figsize=(7, 4), dpi=120)
    groups: dict[tuple, list] = {}
    for r in report["runs"]:
        groups.setdefault((r["arm"], r["alpha"]), []).append(r)
    for (arm, alpha), rows in groups.items():
        curves = []
        for r in rows:
            history = read_train_summary(r["summary_path"]).eval_curve()
            curves.append([(tokens * r["flops"] / max(r["tokens_trained"], 1), loss) for tokens, loss in history])
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
