import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from miniplm.config import ModelArchConfig, TrainConfig
from miniplm.data.sequences import write_sequences
from miniplm.training import train as train_mod
from miniplm.training.train import get_lr, train_lm

ARCH = ModelArchConfig(
    model_type="llama",
    kwargs=dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2
    ),
)


def _stream(tmp_path, models):
    from miniplm.store.models import load_tokenizer

    tok = load_tokenizer(str(models["tokenizer"]))
    text = "the cat sat on the mat. " * 200
    path = tmp_path / "train.bin"
    write_sequences(path, [tok(text)["input_ids"] + [tok.eos_token_id]])
    return path


def test_training_lowers_held_out_loss(tmp_path, models):
    data = _stream(tmp_path, models)
    cfg = TrainConfig(max_steps=40, batch_size=4, block_size=32, learning_rate=1e-2, warmup_steps=5, eval_interval=10)
    summary = train_lm(tmp_path / "run", ARCH, str(models["tokenizer"]), data, cfg, eval_tokens=data)
    evals = [h["eval_loss"] for h in summary.history if "eval_loss" in h]
    assert evals[-1] < evals[0] - 1.0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert model.config.vocab_size >= 256


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, models, monkeypatch):
    data = _stream(tmp_path, models)
    cfg = TrainConfig(max_steps=10, batch_size=2, block_size=16, checkpoint_interval=5, eval_interval=5)
    train_lm(tmp_path / "straight", ARCH, str(models["tokenizer"]), data, cfg)

    real_get_batch, calls = train_mod.get_batch, {"n": 0}

    def crash_after_seven(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 7:
            raise RuntimeError("simulated crash")
        return real_get_batch(*args, **kwargs)

    monkeypatch.setattr(train_mod, "get_batch", crash_after_seven)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_lm(tmp_path / "resumed", ARCH, str(models["tokenizer"]), data, cfg)
    monkeypatch.setattr(train_mod, "get_batch", real_get_batch)
    state = torch.load(tmp_path / "resumed" / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 5
    summary = train_lm(tmp_path / "resumed", ARCH, str(models["tokenizer"]), data, cfg)
    assert summary.steps == 10
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "straight" / "model").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "resumed" / "model").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(max_steps=100, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    lrs = [get_lr(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert np.all(np.diff(lrs[10:]) <= 1e-12) and lrs[-1] >= 0.1


TRAIN_SCRIPT = """
import json, sys
from pathlib import Path
from miniplm.config import ModelArchConfig, TrainConfig
from miniplm.training.train import train_lm
arch, cfg = ModelArchConfig.model_validate_json(sys.argv[4]), TrainConfig.model_validate_json(sys.argv[5])
train_lm(Path(sys.argv[1]), arch, sys.argv[2], Path(sys.argv[3]), cfg, eval_tokens=Path(sys.argv[3]))
"""


@pytest.mark.parametrize(
    "kind,extra",
    [("reference", dict(eval_interval=20, patience=50)), ("student", dict(eval_interval=100))],
)
def test_training_killed_midway_resumes_from_its_last_save_to_the_same_weights(tmp_path, models, kind, extra):
    """SIGKILL while training (the reference's early stopping state too): the rerun starts from the last save, made
    every `checkpoint_seconds`, and ends with the weights of a run never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    data = _stream(tmp_path, models)
    cfg = TrainConfig(
        max_steps=600, batch_size=2, block_size=16, checkpoint_interval=10**6, checkpoint_seconds=0.5, **extra
    )
    tokenizer = str(models["tokenizer"])
    straight = train_lm(tmp_path / "straight", ARCH, tokenizer, data, cfg, eval_tokens=data)
    run_dir = tmp_path / "killed"
    args = [str(run_dir), tokenizer, str(data), ARCH.model_dump_json(), cfg.model_dump_json()]
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, *args])
    state_path = run_dir / "checkpoint" / "state.pt"
    while not state_path.exists():
        assert proc.poll() is None, "training ended before its first save"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(state_path, weights_only=False)["step"]
    assert 0 < saved < cfg.max_steps and not (run_dir / "summary.json").exists()
    resumed = train_lm(run_dir, ARCH, tokenizer, data, cfg, eval_tokens=data)
    assert resumed.steps == straight.steps
    assert resumed.tokens_seen_this_session == (resumed.steps - saved) * cfg.batch_size * cfg.block_size
    assert resumed.history == straight.history
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "straight" / "model").state_dict()
    b = AutoModelForCausalLM.from_pretrained(run_dir / "model").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_fused_cross_entropy_matches_plain_torch():
    from miniplm.training.losses import LinearCrossEntropy

    torch.manual_seed(0)
    h = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (300,))
    fused = LinearCrossEntropy.apply(h.float(), w.float(), targets, 64)  # chunks of 64 positions
    plain = torch.nn.functional.cross_entropy(h @ w.T, targets, reduction="sum")
    assert abs(fused.item() - plain.item()) < 1e-3
    h32, w32 = h.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    (2.0 * LinearCrossEntropy.apply(h32, w32, targets, 64)).backward()
    (2.0 * plain).backward()
    assert torch.allclose(h32.grad.double(), h.grad, atol=1e-4)
    assert torch.allclose(w32.grad.double(), w.grad, atol=1e-4)


def test_kd_loss_is_the_mix_of_next_token_and_teacher_cross_entropy(models):
    from miniplm.training.kd import OnlineTeacher, flop_matched_steps, kd_loss_sum

    student = AutoModelForCausalLM.from_pretrained(models["reference"], dtype=torch.float32)
    teacher = OnlineTeacher(str(models["teacher"]), torch.device("cpu"))
    x = torch.randint(0, 200, (2, 9))
    labels = x[:, 1:].clone()
    labels[1, 5:] = -100
    got = kd_loss_sum(student, teacher, x, labels, 0.3).item()
    with torch.no_grad():
        log_q = torch.log_softmax(student(x[:, :-1]).logits.double(), -1)
        p = torch.softmax(teacher.model(x[:, :-1]).logits.double()[..., : log_q.shape[-1]], -1)
        keep = labels != -100
        lm = -log_q.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)[keep].sum()
        kd = -(p * log_q).sum(-1)[keep].sum()
    assert abs(got - float(0.7 * lm + 0.3 * kd)) < 1e-3 * float(lm)
    assert flop_matched_steps(1000, 10, 30) == 500  # 3*10*1000 / (30 + 30)
