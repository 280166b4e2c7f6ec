"""Per-instance log-probabilities under a causal LM, as fast as the hardware allows.

score(x) for one model is the mean over predicted positions t=2..n of log p(x_t | x_<t). The scorer:
  * sorts instances by length and forms batches by a token budget (rows x longest row), so padding is small;
  * runs the model body once, then the output head on chunks of valid positions only, and takes
    log p = logit[target] - logsumexp(logits) in float32: never a full-vocabulary log-softmax for a batch;
  * adds each instance's per-position log-probs up in float64 (a float32 running sum over 1,000 positions
    drifts by ~1e-5 nats/token), under torch.inference_mode;
  * uses bfloat16 weights and activations where the device has native support (CUDA, AVX512-BF16/AMX CPUs).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from miniplm import varlen
from miniplm.progress import Bar, progress_bar

# Logits per output-head chunk (positions x vocabulary). CPU: 512 x 49k float32 logits, measured fastest here.
# CUDA: ~1 GB of float32 logits, large enough that the head matmul fills the GPU, small beside its memory.
HEAD_CHUNK_LOGITS = {"cpu": 512 * 49152, "cuda": 1 << 28}


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    if dtype != "auto":
        names = {
            "float32": torch.float32,
            "fp32": torch.float32,
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
            "float16": torch.float16,
            "fp16": torch.float16,
        }
        return names[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return fastest_cpu_dtype()


@functools.cache
def fastest_cpu_dtype() -> torch.dtype:
    """bfloat16 or float32, whichever multiplies matrices faster on this CPU (measured once, ~0.2 s).

    CPUs differ: with AMX or fast AVX512-BF16 paths bf16 is 1.5-2.2x faster; on others (seen here: AVX512-BF16
    without AMX) oneDNN's bf16 matmul ran at half the float32 rate. Only native bf16 support is worth probing.
    """
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.float32
    rates = {}
    for dt in (torch.float32, torch.bfloat16):
        a, w = torch.randn(2048, 1024, dtype=dt), torch.randn(1024, 1024, dtype=dt)
        torch.nn.functional.linear(a, w)  # warm-up
        start = time.perf_counter()
        for _ in range(4):
            torch.nn.functional.linear(a, w)
        rates[dt] = 1.0 / (time.perf_counter() - start)
    # bf16 also loses ~1e-2 nats/token of accuracy, so it must win clearly to be chosen.
    return torch.bfloat16 if rates[torch.bfloat16] > 1.2 * rates[torch.float32] else torch.float32


def default_batch_tokens(device: torch.device) -> int:
    # CPU: more than ~4k tokens per batch spills the 2 MB L2 per core and gets slower (DESIGN.md; bench/RESULTS.md).
    # CUDA: a starting point only; once the model is on the GPU, gpu_batch_tokens sizes batches by free memory.
    return 4096 if device.type == "cpu" else 65536


def gpu_batch_tokens(config, dtype: torch.dtype, free_bytes: int) -> int:
    """Tokens per batch for the GPU memory left free once the weights are loaded.

    In inference only one layer's activations are alive at a time: about 6 hidden-wide and 3 MLP-wide vectors
    per token (residual, norm, q/k/v, attention output; gate, up, their product), plus the float32 hidden state
    kept for the head. Half the free memory, less 2 GiB for the head's logit chunk, goes to batches; the
    out-of-memory backoff catches what this misjudges. Clamped to 4k..128k tokens (beyond that the GPU is full).
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = text.hidden_size
    mlp = next((v for k in ("intermediate_size", "ffn_dim", "n_inner") if (v := getattr(text, k, None))), 4 * hidden)
    per_token = (6 * hidden + 3 * mlp) * dtype.itemsize + 4 * hidden
    usable = free_bytes // 2 - (2 << 30)
    return int(min(max(usable // per_token, 4096), 131072)) // 1024 * 1024


@dataclass
class ScoreStats:
    instances: int = 0
    tokens: int = 0  # tokens fed to the model (real, not padding)
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def length_sorted_batches(lengths: Sequence[int], batch_tokens: int) -> list[np.ndarray]:
    """Indices grouped into batches, longest first, each with rows x longest row <= batch_tokens."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches, current, longest = [], [], 0
    for idx in order:
        n = int(lengths[idx])
        longest_if_added = max(longest, n)
        if current and longest_if_added * (len(current) + 1) > batch_tokens:
            batches.append(np.asarray(current))
            current, longest_if_added = [], n
        current.append(idx)
        longest = longest_if_added
    if current:
        batches.append(np.asarray(current))
    return batches


@dataclass
class Prepared:
    """One batch on its way to the device: built (and pinned) on a helper thread while the previous one runs."""

    rows: list[Sequence[int]]
    ids: torch.Tensor  # (B, T) right-padded, or (1, N) packed
    lengths: torch.Tensor  # (B,)
    packed: bool


def packed_layout(lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For instances laid end to end in one row: position ids that restart per instance, which positions
    predict a next token of the same instance (all but each instance's last), and the instance of each of those."""
    total = int(lengths.sum())
    starts = torch.cumsum(lengths, 0) - lengths
    position_ids = torch.arange(total) - torch.repeat_interleave(starts, lengths)
    predicts = torch.ones(total, dtype=torch.bool)
    predicts[torch.cumsum(lengths, 0) - 1] = False
    row_of = torch.repeat_interleave(torch.arange(len(lengths)), (lengths - 1).clamp(min=0))
    return position_ids, predicts, row_of


def flash_attn_installed() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def packing_pays(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether padding-free packing is the faster layout here.

    On a CPU it always is (SmolLM2-135M, real mix: 712 vs 586 tokens/s): attention runs per instance slice with
    SDPA's fused causal kernel, and no row pays for padding. On CUDA it needs a varlen kernel, flash-attn's or
    PyTorch's own (torch >= 2.10); a per-instance loop there would launch too many small kernels.
    """
    if device.type == "cpu":
        return True
    half = dtype in (torch.bfloat16, torch.float16)  # both varlen kernels need a half dtype
    return device.type == "cuda" and half and (flash_attn_installed() or varlen.kernel_available(device, dtype))


def logsumexp_rows(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp over the vocabulary, per row. On a CPU, 16 rows at a time: their 3 MB of logits (half per core)
    stay in L2 across logsumexp's passes (max, subtract, exp, sum), 3.5x faster than one call over 512 x 49k."""
    if logits.device.type != "cpu":
        return torch.logsumexp(logits, dim=-1)
    out = torch.empty(logits.shape[0], dtype=logits.dtype)
    for lo in range(0, logits.shape[0], 16):
        out[lo : lo + 16] = torch.logsumexp(logits[lo : lo + 16], dim=-1)
    return out


@contextmanager
def tensor_core_float32(device: torch.device) -> Iterator[None]:
    """float32 matmuls on CUDA tensor cores (TF32) for a moment: exact for bf16-valued inputs, whose 8 mantissa
    bits fit TF32's 10, with float32 accumulation."""
    if device.type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


class LMScorer:
    """Scores token sequences with one causal LM. Construction stores configuration; the model loads on first use."""

    def __init__(
        self,
        model_path: str,
        device: str = "auto",
        dtype: str = "auto",
        batch_tokens: int | None = None,
        pack: bool | None = None,
    ) -> None:
        self.model_path = model_path
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.batch_tokens = batch_tokens or default_batch_tokens(self.device)
        self._size_batches_by_memory = batch_tokens is None and self.device.type == "cuda"
        self.pack = packing_pays(self.device, self.dtype) if pack is None else pack
        self._model = None
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
            if self._size_batches_by_memory:
                free, _ = torch.cuda.mem_get_info(self.device)
                self.batch_tokens = gpu_batch_tokens(model.config, self.dtype, free)
        return self._model

    def _packed_attention(self) -> str:
        if self.device.type == "cuda" and flash_attn_installed():
            return "flash_attention_2"
        return varlen.register()

    def _prepare(self, rows: list[Sequence[int]]) -> Prepared:
        lengths = torch.tensor([len(r) for r in rows])
        if self.pack:
            ids = torch.tensor([t for r in rows for t in r], dtype=torch.long)[None]
        else:
            ids = torch.zeros((len(rows), int(lengths.max())), dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        if self.device.type == "cuda":
            ids = ids.pin_memory()
        return Prepared(rows, ids, lengths, self.pack)

    @functools.cached_property
    def _head_float32(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output head's weight and bias in float32, for models that run in a half dtype.

        Logits rounded to bf16's 8 mantissa bits moved SmolLM2-135M's means by up to 1.8e-2 nats/token against
        float32; computing the head from the same bf16 hidden states in float32 brings that to 1.2e-2.
        """
        head = self.model.get_output_embeddings()
        bias = getattr(head, "bias", None)
        return head.weight.detach().float(), None if bias is None else bias.detach().float()

    def _head_logprobs(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) per position: target logit minus a chunked float32 logsumexp, never a full log-softmax."""
        model = self.model
        softcap = getattr(model.config, "final_logit_softcapping", None)
        weight, bias = self._head_float32 if h.dtype != torch.float32 else (None, None)
        head = model.get_output_embeddings()
        logp = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
        chunk = max(64, HEAD_CHUNK_LOGITS.get(h.device.type, HEAD_CHUNK_LOGITS["cpu"]) // head.weight.shape[0])
        for lo in range(0, h.shape[0], chunk):
            if weight is None:
                logits = head(h[lo : lo + chunk])  # (C, V)
            else:
                with tensor_core_float32(h.device):
                    logits = torch.nn.functional.linear(h[lo : lo + chunk].float(), weight, bias)
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            target_logit = logits.gather(1, targets[lo : lo + chunk, None]).squeeze(1)
            logp[lo : lo + chunk] = target_logit - logsumexp_rows(logits)
        return logp

    @torch.inference_mode()
    def _forward(self, batch: Prepared) -> torch.Tensor:
        """Sum of log-probs per row (float64, left on the device)."""
        decoder = self.model.get_decoder()
        ids = batch.ids.to(self.device, non_blocking=True)
        if batch.packed:
            position_ids, predicts, row_of = (
                t.to(self.device, non_blocking=True) for t in packed_layout(batch.lengths)
            )
            cu_seq_lens = torch.nn.functional.pad(torch.cumsum(batch.lengths, 0), (1, 0)).to(torch.int32)
            longest = int(batch.lengths.max())
            hidden = decoder(
                input_ids=ids,
                position_ids=position_ids[None],
                cu_seq_lens_q=cu_seq_lens.to(self.device),
                cu_seq_lens_k=cu_seq_lens.to(self.device),
                max_length_q=longest,
                max_length_k=longest,
            ).last_hidden_state[0]  # (N, H)
            keep = predicts[:-1]
            h, targets = hidden[:-1][keep], ids[0, 1:][keep]
        else:
            width = ids.shape[1]
            mask = torch.arange(width, device=self.device)[None, :] < batch.lengths.to(self.device)[:, None]  # (B, T)
            # Equal lengths need no mask, which lets SDPA take its fused causal path.
            attn = None if bool((batch.lengths == width).all()) else mask.long()
            hidden = decoder(input_ids=ids, attention_mask=attn).last_hidden_state  # (B, T, H)
            predicted = mask[:, 1:]  # position t predicts token t+1 where it exists
            h, targets = hidden[:, :-1][predicted], ids[:, 1:][predicted]  # (N, H), (N,)
            row_of = torch.arange(len(batch.rows), device=self.device)[:, None].expand_as(predicted)[predicted]
        logp = self._head_logprobs(h, targets)
        sums = torch.zeros(len(batch.rows), dtype=torch.float64, device=self.device)
        return sums.index_add_(0, row_of, logp.double())

    def _forward_with_backoff(self, batch: Prepared) -> torch.Tensor:
        """On CUDA out-of-memory, halve the batch (and the budget for the rest of the run) and retry."""
        try:
            return self._forward(batch)
        except torch.OutOfMemoryError:
            if len(batch.rows) == 1:
                raise
            torch.cuda.empty_cache()
            self.batch_tokens = max(self.batch_tokens // 2, 1)
            half = len(batch.rows) // 2
            return torch.cat(
                [
                    self._forward_with_backoff(self._prepare(batch.rows[:half])),
                    self._forward_with_backoff(self._prepare(batch.rows[half:])),
                ]
            )

    def score(
        self, token_lists: Sequence[Sequence[int]], bar: Bar | None = None, desc: str = "score"
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield (indices into token_lists, per-row sum of log-probs on the device) per batch, longest first.

        The next batch is assembled on a helper thread while the current one runs, so the device never waits
        on the host for its input.
        """
        lengths = [len(t) for t in token_lists]
        if bar is None:
            with progress_bar(sum(lengths), desc, "tok") as own_bar:
                yield from self.score(token_lists, own_bar)
            return
        if not lengths:
            return
        _ = self.model  # loads the model, and on CUDA sizes batches by the memory it leaves free
        batches = length_sorted_batches(lengths, self.batch_tokens)
        with ThreadPoolExecutor(max_workers=1) as pool:
            upcoming = pool.submit(self._prepare, [token_lists[i] for i in batches[0]])
            for n, batch in enumerate(batches):
                prepared = upcoming.result()
                if n + 1 < len(batches):
                    upcoming = pool.submit(self._prepare, [token_lists[i] for i in batches[n + 1]])
                sums = self._forward_with_backoff(prepared)
                n_real = int(prepared.lengths.sum())
                self.stats.instances += len(prepared.rows)
                self.stats.tokens += n_real
                bar.update(n_real)
                yield batch, sums

    def score_all(self, token_lists: Sequence[Sequence[int]], bar: Bar | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sum of log-probs (float64) and predicted-position counts for every sequence, in input order.

        Results stay on the device until the end and come to the host in one transfer.
        """
        order, pieces = [], []
        start = time.perf_counter()
        for idx, sums in self.score(token_lists, bar):
            order.append(idx)
            pieces.append(sums)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.stats.seconds += time.perf_counter() - start
        out = np.zeros(len(token_lists), dtype=np.float64)
        if pieces:
            out[np.concatenate(order)] = torch.cat(pieces).cpu().numpy()
        counts = np.maximum(np.asarray([len(t) for t in token_lists], dtype=np.int64) - 1, 0)
        return out, counts
