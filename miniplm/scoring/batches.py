"""Instances on their way to the model: token sequences end to end, batches by a token budget, built ahead.

The scorer takes its input as a `Ragged` array (one flat token array and offsets, as Arrow stores a list column:
no Python object per token), groups it into length-sorted batches, and builds each batch's tensor on a helper
thread while the previous batch runs, so the device never waits for the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Ragged:
    """Token sequences end to end in one array, as Arrow stores a list column: `values[offsets[i]:offsets[i+1]]`."""

    values: np.ndarray  # (total,) integer token ids
    offsets: np.ndarray  # (n + 1,) int64

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        values = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lengths.sum()))
        return cls(values, np.concatenate([[0], np.cumsum(lengths)]))

    @classmethod
    def from_arrow(cls, column) -> Ragged:
        """From a pyarrow list array (or chunked array) without a Python object per token."""
        import pyarrow as pa

        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        offsets = array.offsets.to_numpy().astype(np.int64)
        values = array.values.to_numpy(zero_copy_only=False)
        return cls(values[offsets[0] : offsets[-1]], offsets - offsets[0])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows at `indices`, end to end, and their lengths."""
        starts, ends = self.offsets[indices], self.offsets[indices + 1]
        return np.concatenate([self.values[a:b] for a, b in zip(starts, ends, strict=True)]), ends - starts


def length_sorted_batches(lengths: Sequence[int], batch_tokens: int) -> list[np.ndarray]:
    """Indices grouped into batches, longest first, each with rows x longest row <= batch_tokens."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
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


@dataclass
class Prepared:
    """One batch on its way to the device, every index computed on the host: built (and pinned) on a helper thread
    while the previous one runs, so the device copies never wait and the forward never asks the device for a
    shape (no boolean-mask indexing, no `.item()`)."""

    indices: np.ndarray  # rows of the input
    ids: torch.Tensor  # (B, T) right-padded, or (1, N) packed
    lengths: torch.Tensor  # (B,)
    packed: bool
    predicting: torch.Tensor  # (P,) flat positions of the hidden states (B*T or N) that predict a next token
    targets: torch.Tensor  # (P,) the token each of them predicts
    row_of: torch.Tensor  # (P,) the batch row (instance) each belongs to
    position_ids: torch.Tensor | None = None  # (1, N) packed: restarting at each instance
    cu_seq_lens: torch.Tensor | None = None  # (B + 1,) int32, packed: where each instance starts
    attention_mask: torch.Tensor | None = None  # (B, T) padded rows of unequal length; None lets SDPA go fused

    @property
    def longest(self) -> int:
        return int(self.lengths.max())

    def to(self, device: torch.device, name: str) -> torch.Tensor | None:
        tensor = getattr(self, name)
        return None if tensor is None else tensor.to(device, non_blocking=True)


def prepare_batch(tokens: Ragged, indices: np.ndarray, packed: bool, pin: bool) -> Prepared:
    """The rows at `indices` as one packed row (1, N), or right-padded rows (B, T), with the positions that predict
    and their targets; pinned for an asynchronous copy to a GPU."""
    values, lengths = tokens.take(indices)
    lengths_t = torch.from_numpy(lengths)
    flat = torch.from_numpy(values.astype(np.int64))
    extra = {}
    if packed:
        ids = flat[None]
        position_ids, predicts, row_of = packed_layout(lengths_t)
        predicting = torch.nonzero(predicts[:-1]).squeeze(1)
        targets = flat[predicting + 1]
        starts = torch.nn.functional.pad(torch.cumsum(lengths_t, 0), (1, 0)).to(torch.int32)
        extra = {"position_ids": position_ids[None], "cu_seq_lens": starts}
    else:
        width = int(lengths.max())
        ids = torch.zeros((len(indices), width), dtype=torch.long)
        mask = torch.arange(width)[None, :] < lengths_t[:, None]  # (B, T)
        ids[mask] = flat
        predicts = torch.zeros_like(mask)
        predicts[:, :-1] = mask[:, 1:]  # position t predicts token t+1 where it exists
        predicting = torch.nonzero(predicts.flatten()).squeeze(1)
        targets = ids.flatten()[predicting + 1]
        row_of = predicting // width
        if not bool((lengths_t == width).all()):  # equal lengths need no mask: SDPA's fused causal path
            extra["attention_mask"] = mask.long()
    batch = Prepared(indices, ids, lengths_t, packed, predicting, targets, row_of, **extra)
    if pin:
        for name in ("ids", "predicting", "targets", "row_of", "position_ids", "cu_seq_lens", "attention_mask"):
            if (tensor := getattr(batch, name)) is not None:
                setattr(batch, name, tensor.pin_memory())
    return batch


def prefetched(batches: list[np.ndarray], build: Callable[[np.ndarray], Prepared]) -> Iterator[Prepared]:
    """Each batch built, the next one always under way on a helper thread."""
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(build, batches[0])
        for n in range(len(batches)):
            prepared = upcoming.result()
            if n + 1 < len(batches):
                upcoming = pool.submit(build, batches[n + 1])
            yield prepared
