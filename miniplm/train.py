"""Training a causal LM from a Hugging Face config on a flat token stream, nanoGPT style.

Used twice by the pipeline: for the reference LM (on D_ref, in the teacher's tokenizer) and for students
(on exported selections, in the student's tokenizer). Checkpoints hold model, optimizer, step and RNG,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from miniplm.config import ModelArchConfig, TrainConfig
from miniplm.progress import progress_bar
from miniplm.shards import temporary_name, write_json

TOKEN_DTYPE = np.uint32


def write_token_stream(path: Path, sequences: Iterable[list[int]]) -> int:
    """Concatenate sequences (each already ending in EOS) into a flat uint32 file; returns the token count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    n = 0
    with open(tmp, "wb") as f:
        for seq in sequences:
            arr = np.asarray(seq, dtype=TOKEN_DTYPE)
            f.write(arr.tobytes())
            n += arr.size
    tmp.replace(path)
    return n


def read_token_stream(path: Path) -> np.ndarray:
    if path.stat().st_size == 0:  # numpy cannot map an empty file
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")


def build_config(arch: ModelArchConfig, vocab_size: int, max_positions: int, eos_token_id: int):
    from transformers import AutoConfig

    if arch.source:
        config = AutoConfig.from_pretrained(arch.source, **arch.kwargs)
    else:
        config = AutoConfig.for_model(arch.model_type, **arch.kwargs)
    config.vocab_size = vocab_size
    if hasattr(config, "max_position_embeddings"):
        config.max_position_embeddings = max(getattr(config, "max_position_embeddings", 0) or 0, max_positions)
    config.eos_token_id = eos_token_id
    config.bos_token_id = None
    config.pad_token_id = eos_token_id
    return config


def get_batch(data: np.ndarray, batch_size: int, block_size: int, rng: np.random.Generator) -> torch.Tensor:
    """Random windows of block_size + 1 tokens: (B, T+1). The model shifts them into inputs and targets."""
    starts = rng.integers(0, len(data) - block_size - 1, size=batch_size)
    return torch.from_numpy(np.stack([data[s : s + block_size + 1].astype(np.int64) for s in starts]))


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio x learning_rate at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.learning_rate * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * coeff)


LOSS_CHUNK_LOGITS = 1 << 25  # logits alive at once in the loss (128 MB of float32), whatever the vocabulary


def lm_loss_sum(model, x: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropy over a batch of windows x (B, T+1), in float32.

    The output head runs on chunks of positions, each under activation checkpointing: a batch never holds all its
    logits (B x T x V: 1.6 GB for 8 x 1024 tokens of a 49k vocabulary, and as much again for their gradient).
    """
    hidden = model.get_decoder()(input_ids=x[:, :-1]).last_hidden_state  # (B, T, H)
    h, targets = hidden.reshape(-1, hidden.shape[-1]), x[:, 1:].reshape(-1)  # (N, H), (N,)
    head = model.get_output_embeddings()
    softcap = getattr(model.config, "final_logit_softcapping", None)

    def chunk_loss(h_chunk: torch.Tensor, t_chunk: torch.Tensor) -> torch.Tensor:
        logits = head(h_chunk).float()  # (C, V)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return torch.nn.functional.cross_entropy(logits, t_chunk, reduction="sum")

    step = max(1, LOSS_CHUNK_LOGITS // head.weight.shape[0])
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    for lo in range(0, h.shape[0], step):
        if torch.is_grad_enabled():
            total = total + checkpoint(chunk_loss, h[lo : lo + step], targets[lo : lo + step], use_reentrant=False)
        else:
            total = total + chunk_loss(h[lo : lo + step], targets[lo : lo + step])
    return total


@torch.inference_mode()
def estimate_loss(model, data: np.ndarray, batch_size: int, block_size: int, max_batches: int, device) -> float:
    """Mean next-token loss over consecutive windows from the start of `data` (deterministic)."""
    model.eval()
    block_size = min(block_size, len(data) - 1)
    n_windows = min(max_batches * batch_size, (len(data) - 1) // block_size)
    total, count = 0.0, 0
    for lo in range(0, n_windows, batch_size):
        rows = [
            data[i * block_size : i * block_size + block_size + 1].astype(np.int64)
            for i in range(lo, min(lo + batch_size, n_windows))
        ]
        x = torch.from_numpy(np.stack(rows)).to(device)
        total += float(lm_loss_sum(model, x))
        count += x.shape[0] * (x.shape[1] - 1)
    model.train()
    return total / count if count else float("nan")


def resolve_schedule(cfg: TrainConfig, train_tokens: int, block_size: int) -> TrainConfig:
    """The config with its steps, warm-up and evaluation interval made concrete for this much data."""
    steps = cfg.steps_for(train_tokens, block_size)
    return cfg.model_copy(
        update={
            "max_steps": steps,
            "warmup_steps": min(cfg.warmup_steps, steps // 10),
            "eval_interval": cfg.eval_interval or max(1, steps // 10),
        }
    )


def trained(out_dir: Path) -> bool:
    """A training run is finished when its summary and final model exist (written last)."""
    return (out_dir / "summary.json").exists() and (out_dir / "model" / "config.json").exists()


def train_lm(
    out_dir: Path,
    arch: ModelArchConfig,
    tokenizer_path: str,
    train_tokens: Path,
    cfg: TrainConfig,
    eval_tokens: Path | None = None,
    max_positions: int = 1024,
    desc: str = "train",
) -> dict:
    """Train (or resume) a causal LM; the final model lands in `out_dir/model` in Hugging Face format.

    With `cfg.patience`, training stops after that many evaluations on `eval_tokens` without improvement, and
    the model kept is the best one seen.
    """
    from transformers import AutoModelForCausalLM

    from miniplm.devices import pick_device
    from miniplm.models import load_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path, ckpt_dir, final_dir = out_dir / "summary.json", out_dir / "checkpoint", out_dir / "model"
    # what the result depends on: a summary or checkpoint made from anything else is not reused
    run_key = {
        "arch": arch.model_dump(),
        "train": cfg.model_dump(),
        "tokenizer": tokenizer_path,
        "data": str(train_tokens),
        "eval": str(eval_tokens) if eval_tokens else None,
    }
    if trained(out_dir):
        summary = json.loads(summary_path.read_text())
        if summary.get("run_key") == run_key:
            return summary

    tokenizer = load_tokenizer(tokenizer_path)
    data = read_token_stream(train_tokens)
    block_size = min(cfg.block_size, len(data) - 2)
    if block_size < 2:
        raise ValueError(f"{train_tokens}: only {len(data)} training tokens; need more than 3")
    cfg = resolve_schedule(cfg, len(data), block_size)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    config = build_config(arch, len(tokenizer), max(max_positions, block_size + 1), tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_config(config).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
        betas=(0.9, 0.95),
    )
    rng = np.random.default_rng(cfg.seed)
    step, history = 0, []
    best = {"loss": math.inf, "step": 0, "state": None, "stale_evals": 0}
    if (ckpt_dir / "state.pt").exists():  # resume
        state = torch.load(ckpt_dir / "state.pt", weights_only=False)
        if state["run_key"] == run_key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            step, history, best = state["step"], state["history"], state["best"]

    def save_checkpoint() -> None:
        tmp = temporary_name(ckpt_dir)
        tmp.mkdir()
        torch.save(
            {
                "run_key": run_key,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "history": history,
                "best": best,
            },
            tmp / "state.pt",
        )
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        tmp.rename(ckpt_dir)

    eval_data = read_token_stream(eval_tokens) if eval_tokens is not None and eval_tokens.exists() else None
    if eval_data is not None and len(eval_data) < 3:
        eval_data = None
    model.train()
    start, tokens_seen = time.perf_counter(), 0
    last_save = time.monotonic()
    stopped_early = False
    with progress_bar(cfg.max_steps, desc, "step") as bar:
        bar.update(step)
        while step < cfg.max_steps:
            lr = get_lr(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = get_batch(data, cfg.batch_size, block_size, rng).to(device)  # (B, T+1)
            loss = lm_loss_sum(model, x) / (x.shape[0] * (x.shape[1] - 1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            tokens_seen += x.shape[0] * block_size
            record = {"step": step, "lr": lr, "train_loss": loss.item()}
            if eval_data is not None and (step % cfg.eval_interval == 0 or step == cfg.max_steps):
                record["eval_loss"] = estimate_loss(
                    model, eval_data, cfg.batch_size, block_size, cfg.eval_batches, device
                )
                if record["eval_loss"] < best["loss"]:
                    best.update(loss=record["eval_loss"], step=step, stale_evals=0)
                    if cfg.patience:
                        best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    best["stale_evals"] += 1
                    stopped_early = bool(cfg.patience) and best["stale_evals"] >= cfg.patience
            history.append(record)
            bar.update(1)
            if stopped_early:
                break
            due = step % cfg.checkpoint_interval == 0 or time.monotonic() - last_save >= cfg.checkpoint_seconds
            if due and step < cfg.max_steps:
                save_checkpoint()
                last_save = time.monotonic()

    seconds = time.perf_counter() - start
    if cfg.patience and best["state"] is not None:
        model.load_state_dict(best["state"])  # the best weights seen, not the last
    tmp_final = temporary_name(final_dir)
    model.save_pretrained(tmp_final)
    tokenizer.save_pretrained(tmp_final)
    shutil.rmtree(final_dir, ignore_errors=True)
    tmp_final.rename(final_dir)
    save_checkpoint()
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    summary = {
        "run_key": run_key,
        "model_dir": str(final_dir),
        "steps": step,
        "planned_steps": cfg.max_steps,
        "stopped_early": stopped_early,
        "best_step": best["step"] if evals else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens_available": int(len(data)),
        "tokens_seen_this_session": tokens_seen,
        "seconds_this_session": round(seconds, 2),
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "final_eval_loss": (best["loss"] if cfg.patience else evals[-1]) if evals else None,
        "history": history,
    }
    write_json(summary, summary_path)
    return summary
