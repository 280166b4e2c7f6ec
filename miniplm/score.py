"""Per-instance log-probabilities under a causal LM, as fast as the hardware allows.

score(x) for one model is the mean over predicted positions t=2..n of log p(x_t | x_<t). The scorer:
  * sorts instances by length and forms batches by a token budget (rows x longest row), so padding is small;
  * runs the model body once, then the output head on chunks of valid positions only, and takes
    log p = logit[target] - logsumexp(logits) in float32: never a full-vocabulary log-softmax for a batch;
  * accumulates per-instance sums in float32, under torch.inference_mode;
  * uses bfloat16 weights and activations where the device has native support (CUDA, AVX512-BF16/AMX CPUs).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from miniplm.catalog import connect, load_sql
from miniplm.config import ScoreConfig
from miniplm.hashing import stable_hash
from miniplm.progress import Bar, progress_bar
from miniplm.shards import write_parquet
from miniplm.splits import POOL
from miniplm.workdir import Workdir

HEAD_CHUNK_TOKENS = 512  # positions per output-head chunk: (512 x vocab) float32 logits stay in cache-friendly MBs


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
    # CPU: more than ~4k tokens per batch spills the 2 MB L2 per core and gets slower (DESIGN.md).
    return 4096 if device.type == "cpu" else 65536


@dataclass
class ScoreStats:
    instances: int = 0
    tokens: int = 0  # tokens fed to the model (real, not padding)
    padded_tokens: int = 0  # rows x longest row, summed over batches
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


class LMScorer:
    """Scores token sequences with one causal LM. Construction stores configuration; the model loads on first use."""

    def __init__(
        self,
        model_path: str,
        device: str = "auto",
        dtype: str = "auto",
        batch_tokens: int | None = None,
        attn_implementation: str = "sdpa",
    ) -> None:
        self.model_path = model_path
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.batch_tokens = batch_tokens or default_batch_tokens(self.device)
        self.attn_implementation = attn_implementation
        self._model = None
        self.stats = ScoreStats()

    @property
    def model(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=self.dtype, attn_implementation=self.attn_implementation
            )
            self._model = model.to(self.device).eval()
        return self._model

    @torch.inference_mode()
    def _score_batch(self, rows: list[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of log-probs (float32) and number of predicted positions, per row."""
        model = self.model
        lengths = torch.tensor([len(r) for r in rows])
        width = int(lengths.max())
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask = torch.arange(width)[None, :] < lengths[:, None]  # (B, T)
        ids, mask = ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        # Equal lengths need no mask, which lets SDPA take its fused causal path.
        attn = None if bool((lengths == width).all()) else mask.long()
        hidden = model.get_decoder()(input_ids=ids, attention_mask=attn).last_hidden_state  # (B, T, H)
        predicted = mask[:, 1:]  # position t predicts token t+1 where it exists
        h = hidden[:, :-1][predicted]  # (N, H) valid positions only
        targets = ids[:, 1:][predicted]  # (N,)
        row_of = torch.arange(len(rows), device=self.device)[:, None].expand_as(predicted)[predicted]
        head = model.get_output_embeddings()
        softcap = getattr(model.config, "final_logit_softcapping", None)
        logp = torch.empty(h.shape[0], dtype=torch.float32, device=self.device)
        for lo in range(0, h.shape[0], HEAD_CHUNK_TOKENS):
            logits = head(h[lo : lo + HEAD_CHUNK_TOKENS]).float()  # (C, V)
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            target_logit = logits.gather(1, targets[lo : lo + HEAD_CHUNK_TOKENS, None]).squeeze(1)
            logp[lo : lo + HEAD_CHUNK_TOKENS] = target_logit - torch.logsumexp(logits, dim=-1)
        sums = torch.zeros(len(rows), dtype=torch.float32, device=self.device).index_add_(0, row_of, logp)
        return sums.cpu(), (lengths - 1).clamp(min=0)

    def score(
        self, token_lists: Sequence[Sequence[int]], bar: Bar | None = None, desc: str = "score"
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (indices into token_lists, sum_logp, n_predicted) per batch, longest batches first."""
        lengths = [len(t) for t in token_lists]
        if bar is None:
            with progress_bar(sum(lengths), desc, "tok") as own_bar:
                yield from self.score(token_lists, own_bar)
            return
        for batch in length_sorted_batches(lengths, self.batch_tokens):
            start = time.perf_counter()
            rows = [token_lists[i] for i in batch]
            sums, counts = self._score_batch_with_backoff(rows)
            self.stats.seconds += time.perf_counter() - start
            n_real = int(sum(len(r) for r in rows))
            self.stats.instances += len(rows)
            self.stats.tokens += n_real
            self.stats.padded_tokens += len(rows) * max(len(r) for r in rows)
            bar.update(n_real)
            yield batch, sums.numpy(), counts.numpy()

    def _score_batch_with_backoff(self, rows: list[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """On CUDA out-of-memory, halve the batch (and the budget for the rest of the run) and retry."""
        try:
            return self._score_batch(rows)
        except torch.OutOfMemoryError:
            if len(rows) == 1:
                raise
            torch.cuda.empty_cache()
            self.batch_tokens = max(self.batch_tokens // 2, 1)
            half = len(rows) // 2
            a, b = self._score_batch_with_backoff(rows[:half]), self._score_batch_with_backoff(rows[half:])
            return torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])

    def score_all(self, token_lists: Sequence[Sequence[int]], bar: Bar | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sum of log-probs and predicted-position counts for every sequence, in input order."""
        sums = np.zeros(len(token_lists), dtype=np.float32)
        counts = np.zeros(len(token_lists), dtype=np.int64)
        for idx, s, c in self.score(token_lists, bar):
            sums[idx], counts[idx] = s, c
        return sums, counts


SCORE_SCHEMA = pa.schema(
    [
        ("model_fp", pa.string()),
        ("instance_id", pa.string()),
        ("n_predicted", pa.int32()),
        ("sum_logp", pa.float64()),
        ("mean_logp", pa.float64()),
    ]
)


def score_missing(
    workdir: Workdir, manifest: dict, model_path: str, model_fp: str, cfg: ScoreConfig, desc: str = "score"
) -> dict:
    """Score every candidate instance that has no score from this model yet; one Parquet shard per chunk.

    A crash loses at most the chunk in progress: finished shards are found by the anti-join next time.
    """
    con = connect(workdir, manifest)
    params = {"model_fp": model_fp, "split": POOL}
    todo = con.execute(
        f"select count(*), coalesce(sum(len(token_ids)), 0) from ({load_sql('instances_to_score')})", params
    ).fetchall()[0]
    n_todo, tokens_todo = int(todo[0]), int(todo[1])
    summary = {
        "model_fp": model_fp,
        "instances_scored": n_todo,
        "tokens_scored": tokens_todo,
        "shards": 0,
        "seconds": 0.0,
        "tokens_per_s": 0.0,
    }
    if n_todo == 0:
        return summary
    scorer = LMScorer(model_path, device=cfg.device, dtype=cfg.dtype, batch_tokens=cfg.batch_tokens)
    reader = con.sql(load_sql("instances_to_score"), params=params).to_arrow_reader(cfg.shard_instances)
    with progress_bar(tokens_todo, desc, "tok") as bar:
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in itertools.chain(reader, [None]):
            if batch is not None:
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows < cfg.shard_instances:
                    continue
            if not pending_rows:
                break
            chunk = pa.Table.from_batches(pending)
            pending, pending_rows = [], 0
            ids = chunk.column("instance_id").to_pylist()
            sums, counts = scorer.score_all(chunk.column("token_ids").to_pylist(), bar)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = sums.astype(np.float64) / counts
            table = pa.table(
                {
                    "model_fp": [model_fp] * len(ids),
                    "instance_id": ids,
                    "n_predicted": counts.astype(np.int32),
                    "sum_logp": sums.astype(np.float64),
                    "mean_logp": means,
                },
                schema=SCORE_SCHEMA,
            )
            write_parquet(table, workdir.scores_dir(model_fp) / f"{stable_hash(ids)}.parquet")
            summary["shards"] += 1
    summary.update(
        seconds=round(scorer.stats.seconds, 3),
        tokens_per_s=round(scorer.stats.tokens_per_s, 1),
        device=str(scorer.device),
        dtype=str(scorer.dtype).removeprefix("torch."),
    )
    return summary
