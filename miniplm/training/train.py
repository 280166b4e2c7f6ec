"""Training a causal LM from a Hugging Face config, nanoGPT style.

Used for the reference LM (random windows of D_ref, in the teacher's tokenizer) and for students (rows of whole
exported instances, in the student's tokenizer; with an online teacher for Vanilla KD). Checkpoints hold model,
optimizer, step, data position and RNG, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from miniplm.config import ModelArchConfig, TrainConfig
from miniplm.data.sequences import IGNORE, RowStream, read_tokens
from miniplm.progress import progress_bar
from miniplm.store.shards import temporary_name, write_json
from miniplm.training.losses import lm_loss_sum
from miniplm.training.train_summary import TrainSummary


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


LOG_INTERVAL = 50  # steps between transfers of the train losses from the device


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


def resolve_schedule(
    cfg: TrainConfig, train_tokens: int, block_size: int, parameters: int | None = None
) -> TrainConfig:
    """The config with its steps, warm-up and evaluation interval made concrete for this much data (and model)."""
    steps = cfg.steps_for(train_tokens, block_size, parameters)
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


class WindowStream:
    """Random windows of block_size + 1 tokens of a flat stream (the reference's D_ref: any window is text of one
    split); resumable from `state`."""

    def __init__(self, data: np.ndarray, block_size: int, seed: int) -> None:
        self.data, self.block_size = data, block_size
        self.rng = np.random.default_rng(seed)

    @property
    def state(self) -> dict:
        return self.rng.bit_generator.state

    @state.setter
    def state(self, value: dict) -> None:
        self.rng.bit_generator.state = value

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, None]:
        return get_batch(self.data, batch_size, self.block_size, self.rng), None


def train_lm(
    out_dir: Path,
    arch: ModelArchConfig,
    tokenizer_path: str,
    train_tokens: Path,
    cfg: TrainConfig,
    eval_tokens: Path | None = None,
    max_positions: int = 1024,
    desc: str = "train",
    layout: str = "windows",
    teacher: str | None = None,
    kd_ratio: float = 0.0,
) -> TrainSummary:
    """Train (or resume) a causal LM; the final model lands in `out_dir/model` in Hugging Face format.

    `layout`: "windows" trains on random windows of the flat stream `train_tokens`; "instances" on rows of whole
    sequences (`miniplm.data.sequences`), as students are trained. With a `teacher` (same tokenizer), the loss is
    Vanilla KD's `(1 - kd_ratio) * LM + kd_ratio * KD` with the teacher run online.
    With `cfg.patience`, training stops after that many evaluations on `eval_tokens` without improvement, and
    the model kept is the best one seen.
    """
    from transformers import AutoModelForCausalLM

    from miniplm.scoring.devices import pick_device
    from miniplm.store.models import load_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path, ckpt_dir, final_dir = out_dir / "summary.json", out_dir / "checkpoint", out_dir / "model"
    # what the result depends on: a summary or checkpoint made from anything else is not reused
    run_key = {
        "arch": arch.model_dump(),
        "train": cfg.model_dump(),
        "tokenizer": tokenizer_path,
        "data": str(train_tokens),
        "eval": str(eval_tokens) if eval_tokens else None,
        "layout": layout,
        "teacher": teacher,
        "kd_ratio": kd_ratio if teacher else None,
    }
    if trained(out_dir):
        summary = json.loads(summary_path.read_text())
        if summary.get("run_key") == run_key:
            return TrainSummary.model_validate(summary)

    if cfg.block_size is None:  # (a PipelineConfig sets it to the instances' max_len)
        cfg = cfg.model_copy(update={"block_size": max_positions})
    tokenizer = load_tokenizer(tokenizer_path)
    data = read_tokens(train_tokens)
    block_size = cfg.block_size if layout == "instances" else min(cfg.block_size, len(data) - 2)
    if len(data) < 4 or block_size < 2:
        raise ValueError(f"{train_tokens}: only {len(data)} training tokens; need more than 3")
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    config = build_config(arch, len(tokenizer), max(max_positions, block_size + 1), tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_config(config).to(device)
    cfg = resolve_schedule(cfg, len(data), block_size, sum(p.numel() for p in model.parameters()))
    online = None
    if teacher is not None:
        from miniplm.training.kd import OnlineTeacher, kd_loss_sum

        online = OnlineTeacher(teacher, device)
        if online.model.get_output_embeddings().weight.shape[0] < len(tokenizer):
            raise ValueError(f"the teacher {teacher} has fewer output rows than the student's vocabulary")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
        betas=(0.9, 0.95),
        fused=device.type == "cuda",  # one kernel for every parameter's update instead of several per tensor
    )
    if layout == "instances":
        stream = RowStream(train_tokens, block_size, cfg.seed, tokenizer.eos_token_id)
    else:
        stream = WindowStream(data, block_size, cfg.seed)
    step, history = 0, []
    best = {"loss": math.inf, "step": 0, "state": None, "stale_evals": 0}
    tokens_trained, seconds_before = 0, 0.0  # real (not padding) predicted tokens and seconds, over the whole run
    if (ckpt_dir / "state.pt").exists():  # resume
        state = torch.load(ckpt_dir / "state.pt", weights_only=False)
        if state["run_key"] == run_key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            stream.state = state["data"]
            torch.set_rng_state(state["torch_rng"])
            step, history, best = state["step"], state["history"], state["best"]
            tokens_trained, seconds_before = state["tokens_trained"], state["seconds"]

    unlogged: list[tuple[dict, torch.Tensor]] = []  # records whose train loss is still on the device

    def log_losses() -> None:
        """The train losses of the records since the last call, in one transfer (a `.item()` per step would make
        the host wait for the device at every step)."""
        if unlogged:
            values = torch.stack([loss for _, loss in unlogged]).tolist()
            for (record, _), value in zip(unlogged, values, strict=True):
                record["train_loss"] = value
            unlogged.clear()

    def save_checkpoint() -> None:
        log_losses()
        tmp = temporary_name(ckpt_dir)
        tmp.mkdir()
        torch.save(
            {
                "run_key": run_key,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "data": stream.state,
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "history": history,
                "best": best,
                "tokens_trained": tokens_trained,
                "seconds": seconds_before + time.perf_counter() - start,
            },
            tmp / "state.pt",
        )
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        tmp.rename(ckpt_dir)

    eval_data = read_tokens(eval_tokens) if eval_tokens is not None and eval_tokens.exists() else None
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
            x, labels = stream.next_batch(cfg.batch_size)  # (B, T+1), (B, T) or None, on the host
            n_targets = int((labels != IGNORE).sum()) if labels is not None else x.shape[0] * (x.shape[1] - 1)
            x = x.to(device)
            labels = labels.to(device) if labels is not None else None
            if online is not None:
                loss_sum = kd_loss_sum(model, online, x, labels, kd_ratio)
            else:
                loss_sum = lm_loss_sum(model, x, labels)
            loss = loss_sum / max(1, n_targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            tokens_seen += n_targets
            tokens_trained += n_targets
            record = {"step": step, "lr": lr, "train_loss": None, "tokens": tokens_trained}
            unlogged.append((record, loss.detach()))
            if step % LOG_INTERVAL == 0:
                log_losses()
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

    log_losses()
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
    summary = TrainSummary(
        run_key=run_key,
        model_dir=str(final_dir),
        steps=step,
        planned_steps=cfg.max_steps,
        stopped_early=stopped_early,
        best_step=best["step"] if evals else None,
        parameters=sum(p.numel() for p in model.parameters()),
        train_tokens_available=int(len(data)),
        tokens_seen_this_session=tokens_seen,
        tokens_trained=tokens_trained,
        layout=layout,
        teacher_parameters=online.parameters if online is not None else None,
        seconds_this_session=round(seconds, 2),
        seconds=round(seconds_before + seconds, 2),
        final_train_loss=history[-1]["train_loss"] if history else None,
        final_eval_loss=(best["loss"] if cfg.patience else evals[-1]) if evals else None,
        history=history,
    )
    write_json(summary.model_dump(), summary_path)
    return summary
