"""Vanilla knowledge distillation, the paper's online baseline: the teacher runs beside the student at every step.

loss = (1 - r) * LM + r * KD, where KD is the token-level forward KL from the teacher's distribution to the
student's, taken as the cross-entropy against the teacher's full distribution (the teacher's entropy is a constant
for the student). Both need the student and the teacher to share a tokenizer. Logits are made a chunk of positions
at a time, never for a whole batch.
"""

from __future__ import annotations

import torch

from miniplm.scoring.devices import autocast_for
from miniplm.scoring.scorer import LMScorer, float32_logits
from miniplm.training.losses import chunked_sum, head_logits, predicted


def flop_matched_steps(steps: int, student_parameters: int, teacher_parameters: int) -> int:
    """KD's steps for the compute of `steps` plain steps: a step of KD adds a teacher forward (2 N_t per token) to
    the student's forward and backward (6 N_s), so T_kd = 3 N_s T / (3 N_s + N_t)."""
    return max(1, round(3 * student_parameters * steps / (3 * student_parameters + teacher_parameters)))


class OnlineTeacher:
    """The teacher, loaded once for training: its hidden states for a batch, its logits for a chunk of them."""

    def __init__(self, path: str, device: torch.device) -> None:
        # the scorer's loader: the dtype this device runs fastest, and the logit scale some models apply
        self.scorer = LMScorer(path, device=str(device), pack=False)
        self.model = self.scorer.model
        for p in self.model.parameters():
            p.requires_grad_(False)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.no_grad()
    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T, H) hidden states, or the model's own logits where the head alone cannot reproduce them."""
        if self.scorer.logit_scale is None:
            return self.model(input_ids=ids).logits.float()
        return self.model.get_decoder()(input_ids=ids).last_hidden_state

    @torch.no_grad()
    def logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.scorer.logit_scale is None:
            return h
        weight, bias = self.scorer.head_weights(h)  # the head as the scorer runs it: never cast again per chunk
        logits = float32_logits(h, weight, bias)
        logits = logits * self.scorer.logit_scale if self.scorer.logit_scale != 1.0 else logits
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / softcap) * softcap if softcap else logits


def kd_loss_sum(model, teacher: OnlineTeacher, x: torch.Tensor, labels: torch.Tensor, ratio: float) -> torch.Tensor:
    """Sum over predicted positions of (1 - ratio) * cross-entropy with the next token + ratio * cross-entropy with
    the teacher's distribution, in float32."""
    with autocast_for(x.device):
        hidden = model.get_decoder()(input_ids=x[:, :-1]).last_hidden_state
    h, targets = predicted(hidden, x, labels)
    t_hidden, _ = predicted(teacher.hidden(x[:, :-1]), x, labels)
    vocab = model.get_output_embeddings().weight.shape[0]

    def chunk_loss(h_chunk: torch.Tensor, th_chunk: torch.Tensor, t_chunk: torch.Tensor) -> torch.Tensor:
        log_q = torch.log_softmax(head_logits(model, h_chunk), dim=-1)  # (C, V) student
        # the teacher's rows past the tokenizer's vocabulary are padding no text ever produces
        p = torch.softmax(teacher.logits(th_chunk)[:, :vocab], dim=-1)
        lm = torch.nn.functional.nll_loss(log_q, t_chunk, reduction="sum")
        kd = -(p * log_q).sum()
        return (1 - ratio) * lm + ratio * kd

    return chunked_sum(chunk_loss, h.shape[0], vocab, h, t_hidden, targets)
