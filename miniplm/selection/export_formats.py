"""The forms a kept corpus is handed off in: Parquet or JSONL shards, a Hugging Face `datasets` folder, or a flat
token file with its index. Each writer takes batches (an Arrow table of instances, and for tokens their ids) into a
folder of its own and says, on close, what it wrote; none holds more than a batch and one shard's buffers.

The token file is what nanoGPT-style loops memory-map: `tokens.bin`, token ids back to back (uint16 where the
vocabulary fits, else uint32); `tokens.idx.npy`, int64 offsets, sequence i being `tokens[idx[i]:idx[i + 1]]`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import get_args

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import BaseModel

from miniplm.config import ExportFormat
from miniplm.store.shards import ShardWriter, write_parquet

FORMATS = get_args(ExportFormat)
TEXT_SCHEMA = pa.schema(
    [
        ("rank", pa.int64()),
        ("instance_id", pa.string()),
        ("doc_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("source", pa.string()),
        ("score", pa.float64()),
        ("n_tokens", pa.int32()),  # in the teacher's tokenizer, the one the score is per token of
        ("text", pa.string()),
        ("ends_document", pa.bool_()),
    ]
)
SHARD_BYTES = 512 * 2**20
TOKENS_FILE, INDEX_FILE = "tokens.bin", "tokens.idx.npy"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def ids_as(flat: np.ndarray, dtype: np.dtype) -> bytes:
    """Token ids as `dtype` bytes, refused when one does not fit (a tokenizer larger than the format holds)."""
    if flat.size and (flat.min() < 0 or flat.max() > np.iinfo(dtype).max):
        raise ValueError(f"token ids outside 0..{np.iinfo(dtype).max}, what {dtype.name} holds")
    return flat.astype(dtype).tobytes()


def part(folder: Path, i: int, suffix: str) -> Path:
    return folder / f"part-{i:05d}.{suffix}"



class Written(BaseModel):
    """What one format's writer wrote, as its `close()` reports it."""

    files: list[str]
    dtype: str | None = None  # the token formats: the ids' numpy dtype and how many were written
    tokens: int | None = None
    layout: dict[str, str] | None = None  # how to read each file, where the format's own layout is not `tokens`'
    documents: int | None = None  # megatron: documents (each document's kept instances together)
    split: dict[str, dict[str, int]] | None = None  # nanogpt: tokens and instances in train.bin and val.bin
    block_size: int | None = None  # litdata: tokens per item


class ParquetShards:
    def __init__(self, folder: Path, shard_rows: int) -> None:
        self.folder = folder
        self.shards = ShardWriter(lambda i: part(folder, i, "parquet"), TEXT_SCHEMA, shard_rows, SHARD_BYTES)

    def write(self, table: pa.Table, sequences: list[list[int]] | None = None) -> None:
        while table.num_rows:  # a batch may end one shard and start the next: no shard holds over `shard_rows`
            take = min(self.shards.room()[0], table.num_rows)
            self.shards.write(table.slice(0, take))
            table = table.slice(take)

    def close(self) -> Written:
        parts = self.shards.close()
        if not parts:  # an empty selection: one empty shard, so a reader of `*.parquet` finds the columns
            parts = [write_parquet(pa.Table.from_pylist([], schema=TEXT_SCHEMA), part(self.folder, 0, "parquet"))]
        return Written(files=[p.name for p in parts])

    def abort(self) -> None:
        self.shards.abort()


class JsonlShards:
    """One JSON object per line, the same fields as the Parquet columns."""

    def __init__(self, folder: Path, shard_rows: int) -> None:
        self.folder, self.shard_rows = folder, shard_rows
        self.files: list[str] = []
        self._handle = None
        self._rows = 0

    def write(self, table: pa.Table, sequences: list[list[int]] | None = None) -> None:
        start = 0
        while start < table.num_rows:
            if self._handle is None:
                path = part(self.folder, len(self.files), "jsonl")
                self._handle, self._rows = open(path, "wb"), 0  # noqa: SIM115 -- held across batches
                self.files.append(path.name)
            take = min(self.shard_rows - self._rows, table.num_rows - start)
            pl.from_arrow(table.slice(start, take)).write_ndjson(self._handle)
            self._rows += take
            start += take
            if self._rows >= self.shard_rows:
                self._close_file()

    def _close_file(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def close(self) -> Written:
        self._close_file()
        if not self.files:  # an empty selection: one empty shard, as the other formats have
            part(self.folder, 0, "jsonl").touch()
            self.files.append(part(self.folder, 0, "jsonl").name)
        return Written(files=self.files)

    def abort(self) -> None:
        self._close_file()


class HfDataset:
    """A `datasets` folder (`datasets.load_from_disk` opens it): staged as Parquet shards, then converted by
    `datasets` itself, which streams them into its Arrow files."""

    def __init__(self, folder: Path, shard_rows: int, staging: Path) -> None:
        self.folder, self.staging = folder, staging
        self.parquet = ParquetShards(staging / "parquet", shard_rows)
        self.rows = 0

    def write(self, table: pa.Table, sequences: list[list[int]] | None = None) -> None:
        self.parquet.write(table)
        self.rows += table.num_rows

    def close(self) -> Written:
        import datasets

        files = [str(self.staging / "parquet" / name) for name in self.parquet.close().files]
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # the export's own bar is the one that counts
        try:
            if self.rows:
                dataset = datasets.Dataset.from_parquet(files, cache_dir=str(self.staging / "cache"))
                dataset.save_to_disk(str(self.folder), max_shard_size=SHARD_BYTES)
            else:  # an empty selection is still a dataset, with the columns (and one empty shard: none is no dataset)
                empty = datasets.table.InMemoryTable(pa.Table.from_pylist([], schema=TEXT_SCHEMA))
                datasets.Dataset(empty).save_to_disk(str(self.folder), num_shards=1)
        finally:
            if bars:
                datasets.enable_progress_bars()
            shutil.rmtree(self.staging, ignore_errors=True)
        return Written(files=sorted(p.name for p in self.folder.iterdir()))

    def abort(self) -> None:
        self.parquet.abort()
        shutil.rmtree(self.staging, ignore_errors=True)


class TokenFile:
    """Token ids back to back and the offsets where each sequence starts (`n_sequences` of them, known up front, so
    the index is a memory-mapped array filled batch by batch, never a list in memory)."""

    def __init__(self, folder: Path, n_sequences: int, vocab_size: int) -> None:
        self.dtype = token_dtype(vocab_size)
        self._tokens = open(folder / TOKENS_FILE, "wb")  # noqa: SIM115 -- held across batches
        index = folder / INDEX_FILE
        self._index = np.lib.format.open_memmap(index, mode="w+", dtype=np.int64, shape=(n_sequences + 1,))
        self._index[0] = 0
        self.n_sequences, self.written, self.n_tokens = n_sequences, 0, 0

    def write(self, table: pa.Table, sequences: list[list[int]] | pa.Array | None = None) -> None:
        """`sequences`: lists of ids, or an Arrow list array of them (the teacher's, never made Python lists)."""
        if self.written + len(sequences) > self.n_sequences:
            raise ValueError(f"more sequences than the {self.n_sequences} announced")
        if isinstance(sequences, pa.Array):
            lengths = sequences.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
            flat = sequences.flatten().to_numpy(zero_copy_only=False)
        else:
            lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
            flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [np.zeros(0, np.int64)])
        self._tokens.write(ids_as(flat, self.dtype))
        self._index[self.written + 1 : self.written + 1 + len(sequences)] = self.n_tokens + np.cumsum(lengths)
        self.written += len(sequences)
        self.n_tokens += int(lengths.sum())

    def close(self) -> Written:
        self._tokens.close()
        self._index.flush()
        del self._index
        return Written(files=[TOKENS_FILE, INDEX_FILE], dtype=self.dtype.name, tokens=self.n_tokens)

    def abort(self) -> None:
        self._tokens.close()
