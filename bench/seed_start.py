"""How a student's seeds leave the start: replay the first steps of one experiment student's training for several
seeds and settings, each seed's training loss every 25 steps, and each layer's attention entropy on a fixed batch.

    python bench/seed_start.py RUN_DIR --name base --seeds 0-7 --steps 300 [--set warmup_steps=80]
        [--arch initializer_range=0.05] [--out DIR]
    python bench/seed_start.py --table DIR [--plot seeds.png] [--variants a,b]  # the variants in DIR, side by side

RUN_DIR is a student's run directory under WORKDIR/experiments/runs (its summary.json names the data, tokenizer,
architecture and training settings); --set and --arch change the training settings and the architecture's keyword
arguments (`max_steps=null` trains the length `tokens_per_parameter` asks for). The replay uses the product's own
data stream, schedule, configuration and loss; the training itself is `miniplm.training.train`'s, restated here so
that it can look inside (eager attention, for the entropies). One thread per process: the figures are losses, not
speeds, so two replays may run side by side.
"""

from __future__ import annotations

import sys

sys.path[0] = __file__.rsplit("/bench/", 1)[0]  # the repository root, not bench/

import argparse
import json
import statistics
from pathlib import Path


def settings(pairs: list[str] | None) -> dict:
    out = {}
    for pair in pairs or []:
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def replay(run_dir: Path, seed: int, steps: int, train_set: dict, arch_set: dict, every: int = 25):
    """Yield one row every `every` steps: the window's mean training loss, gradient norm, attention entropies."""
    import torch
    from transformers import AutoModelForCausalLM

    from miniplm.config import ModelArchConfig, TrainConfig
    from miniplm.data.sequences import IGNORE, RowStream, read_tokens
    from miniplm.store.models import load_tokenizer
    from miniplm.training.losses import lm_loss_sum
    from miniplm.training.train import build_config, get_lr, resolve_schedule

    torch.set_num_threads(1)
    key = json.loads((run_dir / "summary.json").read_text())["run_key"]
    arch = ModelArchConfig.model_validate(key["arch"])
    arch = arch.model_copy(update={"kwargs": arch.kwargs | arch_set})
    cfg = TrainConfig.model_validate(key["train"]).model_copy(update=train_set | {"seed": seed})
    tokenizer = load_tokenizer(key["tokenizer"])
    data_path = Path(key["data"])
    torch.manual_seed(cfg.seed)
    config = build_config(arch, len(tokenizer), cfg.block_size + 1, tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    parameters = sum(p.numel() for p in model.parameters())
    cfg = resolve_schedule(cfg, len(read_tokens(data_path)), cfg.block_size, parameters)
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": cfg.weight_decay},
                                   {"params": vectors, "weight_decay": 0.0}], lr=cfg.learning_rate,
                                  betas=(0.9, 0.95))  # fmt: skip
    stream = RowStream(data_path, cfg.block_size, cfg.seed, tokenizer.eos_token_id)
    probe, _ = RowStream(data_path, cfg.block_size, 12345, tokenizer.eos_token_id).next_batch(8)
    window: list[float] = []
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(step, cfg)
        x, labels = stream.next_batch(cfg.batch_size)
        n = int((labels != IGNORE).sum()) if labels is not None else x.shape[0] * (x.shape[1] - 1)
        loss = lm_loss_sum(model, x, labels) / max(1, n)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        optimizer.step()
        window.append(loss.item())
        if (step + 1) % every == 0:
            model.eval()
            with torch.no_grad():
                attentions = model(probe[:, :-1], output_attentions=True).attentions  # (batch, heads, T, T) each
            model.train()
            entropy = [[round(float(h), 3) for h in (-(a.clamp_min(1e-12).log() * a).sum(-1)).mean(dim=(0, 2))]
                       for a in attentions]  # fmt: skip
            yield {"step": step + 1, "loss": round(statistics.fmean(window), 4), "grad_norm": round(norm, 3),
                   "lr": get_lr(step, cfg), "warmup_steps": cfg.warmup_steps, "attention_entropy": entropy}  # fmt: skip
            window = []


def read_variants(folder: Path) -> dict[str, dict[int, list[dict]]]:
    variants: dict[str, dict[int, list[dict]]] = {}
    for path in sorted(folder.glob("*-s*.jsonl")):
        name, seed = path.stem.rsplit("-s", 1)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        if rows:
            variants.setdefault(name, {})[int(seed)] = rows
    return variants


def table(variants: dict[str, dict[int, list[dict]]]) -> dict:
    """Per variant and every 50th step: the seeds' median training loss, the largest excess over it, the spread."""
    out = {}
    for name, runs in variants.items():
        last = min(rows[-1]["step"] for rows in runs.values())
        rows = {}
        for step in [s for s in range(50, last + 1, 50)]:
            values = [next(r["loss"] for r in seed_rows if r["step"] == step) for seed_rows in runs.values()]
            median = statistics.median(values)
            rows[step] = {"median": round(median, 3), "max_above_median": round(max(values) - median, 3),
                          "std": round(statistics.stdev(values), 3) if len(values) > 1 else None}  # fmt: skip
        out[name] = {"seeds": len(runs), "by_step": rows}
    return out


def plot(variants: dict[str, dict[int, list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 4), sharey=True, squeeze=False)
    for ax, (name, runs) in zip(axes[0], variants.items(), strict=True):
        for seed, rows in sorted(runs.items()):
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=0.9, label=f"seed {seed}")
        last = [rows[-1]["loss"] for rows in runs.values()]
        spread = statistics.stdev(last) if len(last) > 1 else 0.0
        ax.set_title(f"{name}: std {spread:.3f} at step {min(r[-1]['step'] for r in runs.values())}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(4.5, 7.5)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss (nats/token, mean of 25 steps)")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--name", default="base")
    parser.add_argument("--seeds", default="0-7", help="0-7 or 0,3,5")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--set", action="append", help="a training setting, key=JSON value")
    parser.add_argument("--arch", action="append", help="an architecture keyword argument, key=JSON value")
    parser.add_argument("--out", type=Path, default=Path("seed-start"))
    parser.add_argument("--table", type=Path, help="print the variants written to this folder")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--variants", help="with --table: these variants, in this order (comma list)")
    args = parser.parse_args()
    if args.table:
        variants = read_variants(args.table)
        if args.variants:
            variants = {name: variants[name] for name in args.variants.split(",")}
        if args.plot:
            plot(variants, args.plot)
        print(json.dumps(table(variants)))
        return
    if args.run_dir is None:
        parser.error("a student's run directory, or --table")
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in seeds(args.seeds):
        with open(args.out / f"{args.name}-s{seed}.jsonl", "w") as out:
            for row in replay(args.run_dir, seed, args.steps, settings(args.set), settings(args.arch)):
                out.write(json.dumps(row) + "\n")
                out.flush()
        print(f"{args.name} seed {seed}: loss {row['loss']} at step {row['step']}", file=sys.stderr)


if __name__ == "__main__":
    main()
