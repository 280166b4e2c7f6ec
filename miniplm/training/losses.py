"""The losses of next-token training, computed so that a batch never holds all its logits: the positions that
predict a real token, a sum over chunks of them, and a fused linear + cross-entropy whose gradient is made in the same
pass. Shared by training, Vanilla KD and evaluation."""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from miniplm.data.sequences import IGNORE
from miniplm.scoring.devices import autocast_for

LOSS_CHUNK_LOGITS = 1 << 25  # logits alive at once in the loss (128 MB of float32), whatever the vocabulary


def predicted(hidden: torch.Tensor, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states of the positions that predict a real token, and those tokens: (N, H), (N,)."""
    targets = (x[:, 1:] if labels is None else labels).reshape(-1)
    h = hidden.reshape(-1, hidden.shape[-1])
    if labels is None:
        return h, targets
    keep = targets != IGNORE
    return h[keep], targets[keep]


def chunked_sum(loss_of_chunk, n: int, vocab: int, *tensors: torch.Tensor) -> torch.Tensor:
    """Sum of `loss_of_chunk` over chunks of the first dimension of `tensors`, each chunk under activation
    checkpointing when training: a batch never holds all its logits (B x T x V: 1.6 GB for 8 x 1024 tokens of a 49k
    vocabulary, and as much again for their gradient)."""
    step = max(1, LOSS_CHUNK_LOGITS // vocab)
    total = torch.zeros((), dtype=torch.float32, device=tensors[0].device)
    for lo in range(0, n, step):
        chunk = [t[lo : lo + step] for t in tensors]
        if torch.is_grad_enabled():
            total = total + checkpoint(loss_of_chunk, *chunk, use_reentrant=False)
        else:
            total = total + loss_of_chunk(*chunk)
    return total


def head_logits(model, h: torch.Tensor) -> torch.Tensor:
    logits = model.get_output_embeddings()(h).float()  # (C, V)
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / softcap) * softcap if softcap else logits


class LinearCrossEntropy(torch.autograd.Function):
    """Sum of the cross-entropy of `h @ weight.T` against `targets`, a chunk of positions at a time, with its
    gradient made in the same pass: for each chunk, logits, logsumexp, then softmax minus one-hot in place, and the
    two gradient matmuls. Nothing of a chunk outlives it, so neither a batch's logits nor a log-softmax is kept for
    backward, and no logits are computed twice (activation checkpointing would). Twice as fast on a CPU."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        from miniplm.scoring.scorer import logsumexp_rows

        train = torch.is_grad_enabled() or any(ctx.needs_input_grad[:2])
        w = weight.float()
        grad_h = torch.empty(h.shape, dtype=torch.float32, device=h.device) if train else None
        grad_w = torch.zeros_like(w) if train else None
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        for lo in range(0, h.shape[0], chunk):
            h_c, t_c = h[lo : lo + chunk].float(), targets[lo : lo + chunk]
            logits = h_c @ w.T  # (C, V)
            lse = logsumexp_rows(logits)
            total += (lse - logits.gather(1, t_c[:, None]).squeeze(1)).sum(dtype=torch.float64)
            if train:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                probs[torch.arange(len(t_c), device=h.device), t_c] -= 1.0  # d loss / d logits
                grad_h[lo : lo + chunk] = probs @ w
                grad_w.addmm_(probs.T, h_c)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (h.dtype, weight.dtype)
        return total.float()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_out).to(ctx.dtypes[0]), (grad_w * grad_out).to(ctx.dtypes[1]), None, None


def lm_loss_sum(model, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of next-token cross-entropy over a batch of rows x (B, T+1), in float32. `labels` (B, T), when given,
    are the targets with padding marked IGNORE; otherwise every next token is one."""
    with autocast_for(x.device):
        hidden = model.get_decoder()(input_ids=x[:, :-1]).last_hidden_state  # (B, T, H)
    h, targets = predicted(hidden, x, labels)
    head = model.get_output_embeddings()
    vocab = head.weight.shape[0]
    if getattr(head, "bias", None) is None and not getattr(model.config, "final_logit_softcapping", None):
        return LinearCrossEntropy.apply(h, head.weight, targets, max(1, LOSS_CHUNK_LOGITS // vocab))

    def chunk_loss(h_chunk: torch.Tensor, t_chunk: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(head_logits(model, h_chunk), t_chunk, reduction="sum")

    return chunked_sum(chunk_loss, h.shape[0], vocab, h, targets)
