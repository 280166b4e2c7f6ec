"""What repeating data is worth: the same student and compute on an arm's data cut to 1/k, so it sees it 2, 4, 8, ...
times, with its loss on the target set and on its own training rows at each pass.

    python bench/passes.py --run-dir W/experiments/runs/uniform-KEY --eval-set W/experiments/eval/KEY \\
        [--fractions 1,2,4,8,16] [--seeds 2] [--out DIR]

Takes a trained experiment student's folder (its data and settings: `summary.json`'s run key) and the experiment's
evaluation set (`curve.bin`, the target documents), then trains the same student for the same steps on the first
1/k of the data's sequences (in a seeded order), for each k and seed. Prints, per run, the target loss at each
evaluation and, last, one JSON object: per k the passes, the final target loss (mean over seeds), the final training
loss and their gap. The data-constrained regime reads off it: where extra passes stop helping the target and the
training loss keeps falling, the student memorizes.
"""

from __future__ import annotations

import sys

sys.path[0] = __file__.rsplit("/bench/", 1)[0]  # the repository root, not bench/

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from miniplm.config import ModelArchConfig, TrainConfig
from miniplm.data.sequences import read_offsets, read_tokens, write_sequences
from miniplm.training.train import train_lm


def subset(tokens_path: Path, fraction: int, out: Path) -> int:
    """The first 1/fraction of the sequences in a seeded order (the same for every k: smaller sets nest)."""
    tokens, offsets = read_tokens(tokens_path), read_offsets(tokens_path)
    order = np.random.default_rng(0).permutation(len(offsets) - 1)
    keep = order[: max(1, len(order) // fraction)]
    return write_sequences(out, (tokens[offsets[i] : offsets[i + 1]].tolist() for i in sorted(keep)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a trained experiment student's folder")
    parser.add_argument("--eval-set", type=Path, required=True, help="the experiment's evaluation set folder")
    parser.add_argument("--fractions", default="1,2,4,8,16", help="k: train on 1/k of the data")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--evals", type=int, default=8, help="evaluations over the run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    key = json.loads((args.run_dir / "summary.json").read_text())["run_key"]
    arch = ModelArchConfig.model_validate(key["arch"])
    base = TrainConfig.model_validate(key["train"])
    data = Path(key["data"])
    out = args.out or Path(tempfile.mkdtemp(prefix="miniplm-passes-"))
    eval_tokens = args.eval_set / "curve.bin"
    results = {}
    for k in [int(x) for x in args.fractions.split(",")]:
        part = out / f"data-1-{k}.bin"
        n_tokens = subset(data, k, part) if not part.exists() else int(read_offsets(part)[-1])
        runs = []
        for seed in range(args.seeds):
            cfg = base.model_copy(
                update={"seed": seed, "eval_interval": max(1, base.max_steps // args.evals), "eval_batches": 40}
            )
            summary = train_lm(out / f"k{k}-seed{seed}", arch, key["tokenizer"], part, cfg, eval_tokens,
                               max_positions=cfg.block_size + 1, desc=f"1/{k} seed {seed}", layout="instances")
            curve = [(h["step"], round(h["eval_loss"], 4)) for h in summary["history"] if "eval_loss" in h]
            print(f"1/{k} of the data ({n_tokens:,} tokens), seed {seed}: target loss by step {curve}", flush=True)
            train_losses = [h["train_loss"] for h in summary["history"][-50:]]
            runs.append({"target": summary["final_eval_loss"], "train": statistics.fmean(train_losses),
                         "tokens_trained": summary["tokens_trained"]})  # fmt: skip
        target = statistics.fmean(r["target"] for r in runs)
        train = statistics.fmean(r["train"] for r in runs)
        results[k] = {
            "data_tokens": n_tokens,
            "passes": round(runs[0]["tokens_trained"] / n_tokens, 2),
            "target_loss": round(target, 4),
            "target_by_seed": [round(r["target"], 4) for r in runs],
            "train_loss": round(train, 4),
            "gap": round(target - train, 4),
        }
        print(f"1/{k}: {results[k]}", flush=True)
    print(json.dumps({"steps": base.max_steps, "batch_size": base.batch_size, "block_size": base.block_size,
                      "by_fraction": results}))  # fmt: skip


if __name__ == "__main__":
    main()
