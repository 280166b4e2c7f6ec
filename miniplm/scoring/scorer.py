"""Per-instance log-probabilities under a causal LM: the method, top to bottom.

For one model, score(x) = mean over predicted positions t=2..n of log p(x_t | x_<t). The scorer
  * orders instances by length and forms batches by a token budget;
  * lays a batch's instances end to end in one row where a varlen attention keeps each to itself (no padding),
    or pads them into rows where it cannot;
  * runs the model body once, then the output head on chunks of predicted positions only, taking
    log p = logit[target] - logsumexp(logits) in float32: never a full-vocabulary log-softmax for a batch;
  * adds each instance's per-position log-probs up in float64.
A model whose own forward changes the logits beyond its output layer (Granite divides them, Cohere multiplies,
MiniCPM scales the hidden state first) is found on load by comparing the head's logits with the model's own: a
constant scale is applied in the head, anything else falls back to the model's own logits.
Where and in what precision it runs, and how large a batch is, comes from `devices`.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from miniplm.progress import Bar, progress_bar
from miniplm.scoring import varlen
from miniplm.scoring.batches import Prepared, Ragged, length_sorted_batches, prefetched, prepare_batch
from miniplm.scoring.devices import (
    HEAD_CHUNK_LOGITS,
    cpu_batch_tokens,
    flash_attn_installed,
    gpu_batch_tokens,
    logsumexp_block_rows,
    packing_pays,
    pick_device,
    pick_dtype,
)

SCORER_VERSION = 3  # bump when a change moves scores: the score variant (and so the stored scores) follows it


@dataclass
class ScoreStats:
    instances: int = 0
    tokens: int = 0  # tokens fed to the model (real, not padding)
    seconds: float = 0.0
    oom_retries: int = 0  # times the batch budget halved after CUDA out-of-memory

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def logsumexp_rows(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp over the vocabulary, per row. On a CPU, a few rows at a time, so their logits stay in cache
    across logsumexp's passes (how many is measured per CPU and vocabulary size)."""
    if logits.device.type != "cpu":
        return torch.logsumexp(logits, dim=-1)
    block = logsumexp_block_rows(logits.shape[1])
    out = torch.empty(logits.shape[0], dtype=logits.dtype)
    for lo in range(0, logits.shape[0], block):
        out[lo : lo + block] = torch.logsumexp(logits[lo : lo + block], dim=-1)
    return out


def mixed_head_supported(device: torch.device) -> bool:
    """Whether half-precision matmuls here can write float32 results (`torch.mm(..., out_dtype=)`: CUDA, torch >=
    2.9). Elsewhere a half-precision head runs as a float32 copy."""
    return device.type == "cuda" and hasattr(torch.ops.aten.mm, "dtype")


def float32_logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """float32 logits (C, V) of hidden states h (C, H) through a head weight (V, H): in float32 when the weight is,
    else half-precision inputs accumulated into float32 outputs."""
    if weight.dtype == torch.float32:
        logits = torch.nn.functional.linear(h.float(), weight)
    else:
        logits = torch.mm(h, weight.t(), out_dtype=torch.float32)
    return logits if bias is None else logits + bias.float()


class LMScorer:
    """Scores token sequences with one causal LM. Construction stores configuration; the model loads on first use."""

    def __init__(
        self,
        model_path: str,
        device: str = "auto",
        dtype: str = "auto",
        batch_tokens: int | None = None,
        pack: bool | None = None,
        compile: bool = False,
    ) -> None:
        self.model_path = model_path
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.batch_tokens = batch_tokens
        self.pack = packing_pays(self.device, self.dtype) if pack is None else pack
        self.compile = compile  # torch.compile the model body (dynamic shapes); off unless measured to win
        self._model = None
        self.logit_scale: float | None = 1.0  # None: the head alone cannot reproduce the model's logits
        self.stats = ScoreStats()

    @property
    def model(self):
        if self._model is None:
            from transformers import AutoConfig, AutoModelForCausalLM

            if self.pack and getattr(AutoConfig.from_pretrained(self.model_path), "attn_logit_softcapping", None):
                self.pack = False  # no varlen kernel soft-caps attention logits
            attn = self._packed_attention() if self.pack else "sdpa"
            try:
                model = AutoModelForCausalLM.from_pretrained(
                    self.model_path, dtype=self.dtype, attn_implementation=attn
                )
            except ValueError as exc:
                if "attention" not in str(exc).lower():
                    raise
                # an architecture without this attention path (Gemma 2 has no SDPA one): unpacked, transformers' pick
                self.pack = False
                model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype)
            self._model = model.to(self.device).eval()
            if self.compile:
                decoder = self._model.get_decoder()
                decoder.forward = torch.compile(decoder.forward, dynamic=True)
            self.logit_scale = self._logit_scale()
            if self.dtype != torch.float32 and self.logit_scale is not None:
                self.head_weights(torch.empty(0, dtype=self.dtype, device=self.device))  # a copy, if any, exists now
            if self.batch_tokens is None:
                self.batch_tokens = self._measure_batch_tokens()
            if self.logit_scale is None:  # full logits per batch: keep them the size of one head chunk
                vocab = self._model.get_output_embeddings().weight.shape[0]
                self.batch_tokens = min(self.batch_tokens, max(256, HEAD_CHUNK_LOGITS[self.device.type] // vocab))
        return self._model

    @torch.inference_mode()
    def _logit_scale(self) -> float | None:
        """The constant by which the model's own forward scales the head's logits (1.0 for most models), or None
        when no constant reproduces them; checked on one short row of random tokens."""
        model = self._model
        vocab = model.get_output_embeddings().weight.shape[0]
        row = Ragged(np.random.default_rng(0).integers(0, vocab, size=32), np.array([0, 32]))
        batch = self._prepare(row, np.arange(1))
        ids = batch.to(self.device, "ids")
        kwargs = self._packed_kwargs(batch) if self.pack else {}
        own = model(input_ids=ids, **kwargs).logits[0].float()
        hidden = model.get_decoder()(input_ids=ids, **kwargs).last_hidden_state[0]
        raw = model.get_output_embeddings()(hidden).float()
        softcap = getattr(model.config, "final_logit_softcapping", None)
        ours = torch.tanh(raw / softcap) * softcap if softcap else raw
        tolerance = (1e-4 if self.dtype == torch.float32 else 2e-2) * float(own.abs().max())
        if float((ours - own).abs().max()) <= tolerance:
            return 1.0
        if not softcap:
            scale = float((raw * own).sum() / (raw * raw).sum())
            if float((raw * scale - own).abs().max()) <= tolerance:
                return scale
        warnings.warn(
            f"{self.model_path}: the model's own forward changes its logits beyond the output layer in a way the "
            "scorer cannot reproduce; scoring from its own logits (slower)",
            stacklevel=2,
        )
        return None

    def _packed_kwargs(self, batch: Prepared) -> dict:
        """What a packed row tells the attention: where each instance starts, and positions that restart there."""
        cu_seq_lens = batch.to(self.device, "cu_seq_lens")
        return {
            "position_ids": batch.to(self.device, "position_ids"),
            "cu_seq_lens_q": cu_seq_lens,
            "cu_seq_lens_k": cu_seq_lens,
            "max_length_q": batch.longest,
            "max_length_k": batch.longest,
        }

    @property
    def attention(self) -> str:
        """The attention path that scores: `flash-attn varlen`, `torch varlen`, `per-instance sdpa` (packed on a
        CPU, or a GPU whose varlen kernel failed: see `varlen.kernel_fallback()`), or `padded`."""
        _ = self.model
        if not self.pack:
            return "padded"
        if self._model.config._attn_implementation == "flash_attention_2":
            return "flash-attn varlen"
        return "torch varlen" if varlen.kernel_available(self.device, self.dtype) else "per-instance sdpa"

    def _packed_attention(self) -> str:
        if self.device.type == "cuda" and flash_attn_installed():
            return "flash_attention_2"
        return varlen.register()

    def _measure_batch_tokens(self) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return gpu_batch_tokens(self._model.config, self.dtype, free)
        shape = hashlib.sha256(self._model.config.to_json_string(use_diff=False).encode()).hexdigest()[:16]
        return cpu_batch_tokens(f"{shape}:{'packed' if self.pack else 'padded'}", self.dtype, self._rate_at)

    def _rate_at(self, budget: int) -> float:
        """Tokens per second of one batch of `budget` tokens in rows of 256 (random tokens: speed, not scores)."""
        vocab = self._model.config.get_text_config().vocab_size
        rows = max(1, budget // 256)
        tokens = Ragged(
            np.random.default_rng(0).integers(0, vocab, size=rows * 256), np.arange(rows + 1, dtype=np.int64) * 256
        )
        batch = self._prepare(tokens, np.arange(rows))
        self._forward(batch)  # warm-up: kernels and allocator for this shape
        start = time.perf_counter()
        self._forward(batch)
        return rows * 256 / (time.perf_counter() - start)

    def _prepare(self, tokens: Ragged, indices: np.ndarray) -> Prepared:
        return prepare_batch(tokens, indices, self.pack, pin=self.device.type == "cuda")

    @torch.inference_mode()
    def _forward(self, batch: Prepared) -> torch.Tensor:
        """Sum of log-probs per row (float64, left on the device)."""
        # the body only, then the head on predicted positions; or, where the head alone cannot reproduce the
        # model's logits, the whole model
        body = self.model.get_decoder() if self.logit_scale is not None else self.model
        ids = batch.to(self.device, "ids")
        if batch.packed:
            out = body(input_ids=ids, **self._packed_kwargs(batch))
        else:
            out = body(input_ids=ids, attention_mask=batch.to(self.device, "attention_mask"))
        hidden = out.last_hidden_state if self.logit_scale is not None else out.logits  # (B, T, H or V)
        # the positions that predict, chosen by indices computed on the host: no sync with the device
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.to(self.device, "predicting"))  # (P, H or V)
        targets, row_of = batch.to(self.device, "targets"), batch.to(self.device, "row_of")  # (P,), (P,)
        if self.logit_scale is None:  # `h` holds the model's own logits
            h = h.float()
            logp = h.gather(1, targets[:, None]).squeeze(1) - logsumexp_rows(h)
        else:
            logp = self._head_logprobs(h, targets)
        sums = torch.zeros(len(batch.indices), dtype=torch.float64, device=self.device)
        return sums.index_add_(0, row_of, logp.double())

    def _head_logprobs(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) per position: target logit minus a chunked float32 logsumexp, never a full log-softmax.

        Logits are float32 in every dtype: rounded to bf16's 8 mantissa bits they would move mean log-probs by about
        1e-2 nats/token more. On CUDA a half-precision head multiplies in its own dtype and accumulates into float32
        logits (`float32_logits`), at the tensor cores' half-precision rate and without a float32 copy of the head.
        """
        model = self.model
        softcap = getattr(model.config, "final_logit_softcapping", None)
        head = model.get_output_embeddings()
        weight, bias = self.head_weights(h)
        logp = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
        chunk = max(64, HEAD_CHUNK_LOGITS.get(h.device.type, HEAD_CHUNK_LOGITS["cpu"]) // head.weight.shape[0])
        for lo in range(0, h.shape[0], chunk):
            logits = float32_logits(h[lo : lo + chunk], weight, bias)  # (C, V) float32
            if self.logit_scale != 1.0:
                logits = logits * self.logit_scale
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            target_logit = logits.gather(1, targets[lo : lo + chunk, None]).squeeze(1)
            logp[lo : lo + chunk] = target_logit - logsumexp_rows(logits)
        return logp

    def head_weights(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The head's weight and bias as `float32_logits` takes them for hidden states like `h`: its own where they
        multiply into float32 directly, else a float32 copy (made once; counted before batches are sized)."""
        head = self.model.get_output_embeddings()
        bias = getattr(head, "bias", None)
        if h.dtype == torch.float32 or mixed_head_supported(h.device):
            return head.weight, bias
        if not hasattr(self, "_head_f32"):
            self._head_f32 = (head.weight.detach().float(), None if bias is None else bias.detach().float())
        return self._head_f32

    def score(self, tokens: Ragged, bar: Bar | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield (indices into `tokens`, per-row sum of log-probs, float64, still on the device) per batch, longest
        first. Results stay on the device until the caller collects them, so the GPU never waits for a transfer;
        the next batch is assembled on a helper thread while the current one runs.

        On CUDA out-of-memory the budget halves and what remains (the failed batch and every batch not yet run) is
        cut again at the new budget. The retry happens outside the exception handler: inside it, the exception's
        traceback still holds the failed forward's activations, and emptying the cache would free nothing.
        """
        if len(tokens) == 0:
            return
        _ = self.model  # loads the model and sizes batches for this device
        todo = np.arange(len(tokens))
        start = time.perf_counter()
        while len(todo):
            batches = [todo[b] for b in length_sorted_batches(tokens.lengths[todo], self.batch_tokens)]
            failed = None
            for n, prepared in enumerate(prefetched(batches, lambda indices: self._prepare(tokens, indices))):
                try:
                    sums = self._forward(prepared)
                except torch.OutOfMemoryError:
                    if len(prepared.indices) == 1:
                        raise  # one instance does not fit: nothing left to halve
                    failed = n
                    break
                n_real = int(prepared.lengths.sum())
                self.stats.instances += len(prepared.indices)
                self.stats.tokens += n_real
                if bar is not None:
                    bar.update(n_real)
                yield prepared.indices, sums
            if failed is None:
                break
            torch.cuda.empty_cache()
            self.batch_tokens = max(self.batch_tokens // 2, 1)
            self.stats.oom_retries += 1
            todo = np.concatenate(batches[failed:])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stats.seconds += time.perf_counter() - start

    def score_all(
        self, tokens: Ragged | Sequence[Sequence[int]], bar: Bar | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sum of log-probs (float64) and predicted-position counts for every sequence, in input order; the sums
        come to the host in one transfer."""
        if not isinstance(tokens, Ragged):
            tokens = Ragged.from_lists(tokens)
        order, pieces = [], []
        with progress_bar(int(tokens.offsets[-1]), "score", "tok") if bar is None else nullcontext(bar) as b:
            for idx, sums in self.score(tokens, b):
                order.append(idx)
                pieces.append(sums)
        out = np.zeros(len(tokens), dtype=np.float64)
        if pieces:
            out[np.concatenate(order)] = torch.cat(pieces).cpu().numpy()
        return out, np.maximum(tokens.lengths - 1, 0)
