"""Training rows made of whole instances, as the paper trains its students.

An exported instance is one training sequence (ending in EOS). Sequences are laid into rows of `block_size + 1`
tokens in a seeded order per pass: a row holds whole sequences separated by their EOS, first-fit among a few open
rows, and the rest of a row is padding that no loss ever reads. A row never holds a window that runs from one
instance into another; a sequence longer than a row is cut into row-sized pieces of its own.

Sequences live as a flat uint32 token file plus `<file>.offsets.npy` (where each sequence starts, and the end).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from miniplm.store.shards import temporary_name

TOKEN_DTYPE = np.uint32
IGNORE = -100  # label of a padded position: cross-entropy skips it
OPEN_ROWS = 64  # rows a sequence may still be placed in: enough to fill rows to ~99% without reordering much


def offsets_path(tokens_path: Path) -> Path:
    return tokens_path.with_name(tokens_path.name + ".offsets.npy")


def write_sequences(tokens_path: Path, sequences: Iterable[list[int]]) -> int:
    """Write sequences as a flat token file and their offsets; returns the number of tokens."""
    tokens_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(tokens_path)
    offsets = [0]
    with open(tmp, "wb") as f:
        for seq in sequences:
            arr = np.asarray(seq, dtype=TOKEN_DTYPE)
            f.write(arr.tobytes())
            offsets.append(offsets[-1] + arr.size)
    off_path = offsets_path(tokens_path)
    off_tmp = temporary_name(off_path)
    with open(off_tmp, "wb") as f:
        np.save(f, np.asarray(offsets, dtype=np.int64))
    off_tmp.replace(off_path)
    tmp.replace(tokens_path)  # last: the token file marks the pair complete
    return offsets[-1]


def read_tokens(path: Path) -> np.ndarray:
    if path.stat().st_size == 0:  # numpy cannot map an empty file
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")


def read_offsets(tokens_path: Path) -> np.ndarray:
    return np.load(offsets_path(tokens_path))


def pack_rows(lengths: np.ndarray, order: np.ndarray, capacity: int) -> list[list[tuple[int, int, int]]]:
    """Rows of at most `capacity` tokens: each a list of (sequence, start, end) pieces, visited in `order`.

    First-fit among the last OPEN_ROWS rows keeps the seeded order nearly intact while leaving little padding.
    """
    rows: list[list[tuple[int, int, int]]] = []
    room: list[int] = []
    first_open = 0
    for seq in order.tolist():
        n = int(lengths[seq])
        start = 0
        while n - start > capacity:  # a sequence longer than a row: whole rows of its own
            rows.append([(seq, start, start + capacity)])
            room.append(0)
            start += capacity
        need = n - start
        if need <= 0:
            continue
        for r in range(first_open, len(rows)):
            if room[r] >= need:
                rows[r].append((seq, start, n))
                room[r] -= need
                break
        else:
            rows.append([(seq, start, n)])
            room.append(capacity - need)
        first_open = max(first_open, len(rows) - OPEN_ROWS)
    return rows


class RowStream:
    """Rows of whole instances, pass after pass, each pass in its own seeded order; resumable from `state`."""

    def __init__(self, tokens_path: Path, block_size: int, seed: int, eos_id: int) -> None:
        self.tokens = read_tokens(tokens_path)
        self.offsets = read_offsets(tokens_path)
        real = np.diff(self.offsets)
        # an instance cut from the middle of a document has no EOS of its own: one separates it from the next
        last = self.tokens[np.maximum(self.offsets[1:] - 1, 0)] if len(self.tokens) else np.zeros(0, TOKEN_DTYPE)
        self.separator = (real > 0) & (last != eos_id)
        self.lengths = real + self.separator
        self.capacity = block_size + 1
        self.seed = seed
        self.pad_id = eos_id
        self.state = {"pass": 0, "row": 0}
        self._rows: list | None = None
        self._rows_pass = -1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def _pass_rows(self, n: int) -> list:
        if self._rows_pass != n:
            order = np.random.default_rng([self.seed, n]).permutation(len(self.lengths))
            self._rows, self._rows_pass = pack_rows(self.lengths, order, self.capacity), n
        return self._rows

    def rows_per_pass(self) -> int:
        return len(self._pass_rows(0))

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs + last target) ids (B, block_size + 1) and labels (B, block_size), padding labelled IGNORE."""
        x = np.full((batch_size, self.capacity), self.pad_id, dtype=np.int64)
        real = np.zeros((batch_size, self.capacity), dtype=bool)
        for b in range(batch_size):
            rows = self._pass_rows(self.state["pass"])
            if self.state["row"] >= len(rows):
                self.state = {"pass": self.state["pass"] + 1, "row": 0}
                rows = self._pass_rows(self.state["pass"])
            at = 0
            for seq, start, end in rows[self.state["row"]]:
                lo, hi = int(self.offsets[seq]), int(self.offsets[seq + 1])
                copied = min(end, hi - lo) - start  # the separator, where there is one, is the last position
                x[b, at : at + copied] = self.tokens[lo + start : lo + start + copied]
                real[b, at : at + end - start] = True  # (positions past `copied` already hold the EOS pad)
                at += end - start
            self.state["row"] += 1
        labels = np.where(real[:, 1:], x[:, 1:], IGNORE)
        return torch.from_numpy(x), torch.from_numpy(labels)
