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
import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


def flash_varlen_available(device: torch.device) -> bool:
    """Padding-free packing is exact only with flash-attention's varlen kernel (SDPA would leak across instances)."""
    if device.type != "cuda":
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


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
        self.pack = flash_varlen_available(self.device) if pack is None else pack
        self._model = None
        self.stats = ScoreStats()

    @property
    def model(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM

            attn = "flash_attention_2" if self.pack else "sdpa"
            try:
                model = AutoModelForCausalLM.from_pretrained(
                    self.model_path, dtype=self.dtype, attn_implementation=attn
                )
            except ValueError as exc:
                if self.pack or "attention" not in str(exc).lower():
                    raise
                # a few architectures (Gemma 2, for one) have no SDPA path: let transformers pick theirs
                model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype)
            self._model = model.to(self.device).eval()
        return self._model

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

    def _head_logprobs(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) per position: target logit minus a chunked float32 logsumexp, never a full log-softmax."""
        model = self.model
        head = model.get_output_embeddings()
        softcap = getattr(model.config, "final_logit_softcapping", None)
        logp = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
        for lo in range(0, h.shape[0], HEAD_CHUNK_TOKENS):
            logits = head(h[lo : lo + HEAD_CHUNK_TOKENS]).float()  # (C, V)
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            target_logit = logits.gather(1, targets[lo : lo + HEAD_CHUNK_TOKENS, None]).squeeze(1)
            logp[lo : lo + HEAD_CHUNK_TOKENS] = target_logit - torch.logsumexp(logits, dim=-1)
        return logp

    @torch.inference_mode()
    def _forward(self, batch: Prepared) -> torch.Tensor:
        """Sum of log-probs per row (float32, left on the device)."""
        decoder = self.model.get_decoder()
        ids = batch.ids.to(self.device, non_blocking=True)
        if batch.packed:
            position_ids, predicts, row_of = (
                t.to(self.device, non_blocking=True) for t in packed_layout(batch.lengths)
            )
            hidden = decoder(input_ids=ids, position_ids=position_ids[None]).last_hidden_state[0]  # (N, H)
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
        return torch.zeros(len(batch.rows), dtype=torch.float32, device=self.device).index_add_(0, row_of, logp)

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
        batches = length_sorted_batches(lengths, self.batch_tokens)
        if not batches:
            return
        _ = self.model
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
        """Sum of log-probs (float32) and predicted-position counts for every sequence, in input order.

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
        out = np.zeros(len(token_lists), dtype=np.float32)
        if pieces:
            out[np.concatenate(order)] = torch.cat(pieces).cpu().numpy()
        counts = np.maximum(np.asarray([len(t) for t in token_lists], dtype=np.int64) - 1, 0)
        return out, counts


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
    With several GPUs (or `cfg.processes` > 1) one process per device scores its own hash partition.
    """
    all_gpus = cfg.device in {"auto", "cuda"} and pick_device(cfg.device).type == "cuda"  # not a named cuda:N
    world = cfg.processes or (torch.cuda.device_count() if all_gpus else 1)
    if world <= 1:
        return _score_partition(str(workdir.root), manifest, model_path, model_fp, cfg, desc, 0, 1)
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(
            _score_rank,
            args=(world, str(workdir.root), manifest, model_path, model_fp, cfg, desc, tmp),
            nprocs=world,
            join=True,
        )
        parts = [json.loads((Path(tmp) / f"{rank}.json").read_text()) for rank in range(world)]
    summary = {
        "model_fp": model_fp,
        "instances_scored": sum(p["instances_scored"] for p in parts),
        "tokens_scored": sum(p["tokens_scored"] for p in parts),
        "shards": sum(p["shards"] for p in parts),
        "seconds": max(p["seconds"] for p in parts),
        "processes": world,
    }
    summary["tokens_per_s"] = round(summary["tokens_scored"] / summary["seconds"], 1) if summary["seconds"] else 0.0
    return summary


def _score_rank(
    rank: int,
    world: int,
    root: str,
    manifest: dict,
    model_path: str,
    model_fp: str,
    cfg: ScoreConfig,
    desc: str,
    out_dir: str,
) -> None:
    device = pick_device(cfg.device)
    if device.type == "cuda":
        cfg = cfg.model_copy(update={"device": f"cuda:{rank}"})
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    summary = _score_partition(root, manifest, model_path, model_fp, cfg, f"{desc} [{rank}/{world}]", rank, world)
    Path(out_dir, f"{rank}.json").write_text(json.dumps(summary))


def _score_partition(
    root: str, manifest: dict, model_path: str, model_fp: str, cfg: ScoreConfig, desc: str, rank: int, world: int
) -> dict:
    workdir = Workdir(Path(root))
    con = connect(workdir, manifest)
    params = {"model_fp": model_fp, "split": POOL, "rank": rank, "world_size": world}
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
