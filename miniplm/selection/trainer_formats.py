"""The kept corpus in the token formats large trainers open as they are, with document ends marked:

- `megatron`: an indexed dataset, `PREFIX.bin` (token ids back to back) and `PREFIX.idx` (Megatron-Core's
  `IndexedDataset` index: a header, the sequences' lengths and byte offsets, and the sequence indices where
  documents end), one sequence per kept instance. Megatron-Core, NeMo and GPT-NeoX read it.
- `nanogpt`: `train.bin` and `val.bin`, flat uint16 token ids with each document ended by the tokenizer's
  end-of-text token, and `meta.pkl` holding `vocab_size`, as nanoGPT's `train.py` reads a `data/NAME` folder.
- `litdata`: an optimized litdata dataset of int32 tokens, what litgpt's pre-training streams with
  `StreamingDataset(item_loader=TokensLoader(block_size))`. That loader cuts each chunk into whole blocks and drops
  a chunk's tail, so the stream is written in items of exactly `block_size` tokens and chunks of whole items: every
  token comes back but the last partial block's.

All three take the instances grouped by document (`kept_instances_by_document.sql`): each document's kept instances in
chunk order, `last_of_document` where they end; a document whose own last chunk was not kept still ends with EOS,
so no two documents run together. Memory holds one batch: the index's arrays go to scratch files as they grow.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa

from miniplm.selection.export_formats import Written, ids_as

MEGATRON_PREFIX = "data"
NANOGPT_FILES = ("train.bin", "val.bin", "meta.pkl")
# Megatron-Core's own index header, version and dtype codes (megatron.core.datasets.indexed_dataset.DType)
_MEGATRON_HEADER = b"MMIDIDX\x00\x00"
_MEGATRON_DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
_COPY_ROWS = 1 << 20
LITDATA_CHUNK_TOKENS = 16 * 2**20  # 64 MB chunks of int32 ids


def megatron_dtype(vocab_size: int) -> np.dtype:
    """The dtype Megatron-Core's own preprocessing picks for a vocabulary: uint16 below 65,500 ids, else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def documents_ended(table: pa.Table, sequences, eos: int) -> list[np.ndarray]:
    """Each instance's ids, with EOS appended where its document's kept instances end and it has none."""
    ends = table.column("last_of_document").to_pylist()
    if isinstance(sequences, pa.Array):
        sequences = sequences.to_numpy(zero_copy_only=False)
    out = []
    for ids, end in zip(sequences, ends, strict=True):
        ids = np.asarray(ids, dtype=np.int64)
        if end and (ids.size == 0 or ids[-1] != eos):
            ids = np.append(ids, eos)
        out.append(ids)
    return out


class MegatronIndexed:
    def __init__(self, folder: Path, vocab_size: int, eos: int) -> None:
        self.folder, self.eos, self.dtype = folder, eos, megatron_dtype(vocab_size)
        self._bin = open(folder / f"{MEGATRON_PREFIX}.bin", "wb")  # noqa: SIM115 -- held across batches
        self._lengths = open(folder / ".lengths", "wb")  # noqa: SIM115 -- scratch, merged into the index on close
        self._doc_ends = open(folder / ".doc_ends", "wb")  # noqa: SIM115
        self.sequences, self.documents, self.tokens = 0, 0, 0

    def write(self, table: pa.Table, sequences) -> None:
        ends = table.column("last_of_document").to_pylist()
        batch = documents_ended(table, sequences, self.eos)
        self._bin.write(ids_as(np.concatenate(batch or [np.zeros(0, np.int64)]), self.dtype))  # one write a batch
        lengths = np.fromiter((len(ids) for ids in batch), dtype=np.int32, count=len(batch))
        self._lengths.write(lengths.tobytes())
        doc_ends = self.sequences + 1 + np.flatnonzero(ends)  # a document ends after these sequences
        self._doc_ends.write(doc_ends.astype(np.int64).tobytes())
        self.sequences += len(batch)
        self.documents += len(doc_ends)
        self.tokens += int(lengths.sum(dtype=np.int64))

    def close(self) -> Written:
        self._bin.close()
        self._lengths.close()
        self._doc_ends.close()
        lengths_path, doc_ends_path = self.folder / ".lengths", self.folder / ".doc_ends"
        with open(self.folder / f"{MEGATRON_PREFIX}.idx", "wb") as idx:
            idx.write(_MEGATRON_HEADER + struct.pack("<Q", 1) + struct.pack("<B", _MEGATRON_DTYPE_CODES[self.dtype]))
            idx.write(struct.pack("<Q", self.sequences) + struct.pack("<Q", self.documents + 1))
            lengths = np.memmap(lengths_path, dtype=np.int32, mode="r") if self.sequences else np.zeros(0, np.int32)
            for lo in range(0, self.sequences, _COPY_ROWS):
                idx.write(np.asarray(lengths[lo : lo + _COPY_ROWS]).tobytes())
            offset = 0  # byte offsets of each sequence in the .bin: the lengths' running sum, chunk by chunk
            for lo in range(0, self.sequences, _COPY_ROWS):
                chunk = np.asarray(lengths[lo : lo + _COPY_ROWS], dtype=np.int64) * self.dtype.itemsize
                starts = offset + np.concatenate([[0], np.cumsum(chunk)[:-1]])
                idx.write(starts.astype(np.int64).tobytes())
                offset += int(chunk.sum())
            del lengths
            idx.write(np.zeros(1, np.int64).tobytes())  # document indices start at sequence 0
            idx.write(doc_ends_path.read_bytes() if self.documents else b"")
        lengths_path.unlink()
        doc_ends_path.unlink()
        files = [f"{MEGATRON_PREFIX}.bin", f"{MEGATRON_PREFIX}.idx"]
        layout = {
            files[0]: f"token ids back to back, {self.dtype.name}",
            files[1]: f"Megatron-Core's IndexedDataset index (version 1): IndexedDataset('FOLDER/{MEGATRON_PREFIX}')",
        }
        return Written(files=files, dtype=self.dtype.name, tokens=self.tokens, documents=self.documents, layout=layout)

    def abort(self) -> None:
        for handle in (self._bin, self._lengths, self._doc_ends):
            handle.close()


class LitdataTokens:
    def __init__(self, folder: Path, eos: int, block_size: int) -> None:
        from litdata.streaming.item_loader import TokensLoader
        from litdata.streaming.writer import BinaryWriter

        self.eos, self.block_size = eos, block_size
        blocks_per_chunk = max(1, LITDATA_CHUNK_TOKENS // block_size)
        self._writer = BinaryWriter(str(folder), chunk_size=blocks_per_chunk * block_size, item_loader=TokensLoader())
        self._pending = np.zeros(0, np.int32)  # less than a block, carried into the next batch
        self.items, self.tokens = 0, 0

    def write(self, table: pa.Table, sequences) -> None:
        import torch

        batch = documents_ended(table, sequences, self.eos)
        stream = np.concatenate([self._pending, *(np.asarray(ids, np.int64) for ids in batch)])
        stream = np.frombuffer(ids_as(stream, np.dtype(np.int32)), dtype=np.int32)  # checked and converted once
        whole = stream.size // self.block_size * self.block_size
        for lo in range(0, whole, self.block_size):
            self._writer.add_item(self.items, torch.from_numpy(stream[lo : lo + self.block_size].copy()))
            self.items += 1
        self._pending = stream[whole:].copy()
        self.tokens += sum(len(ids) for ids in batch)

    def close(self) -> Written:
        import torch

        if self._pending.size:  # the last partial block
            self._writer.add_item(self.items, torch.from_numpy(self._pending))
            self.items += 1
        self._writer.done()
        self._writer.merge()
        files = sorted(p.name for p in Path(self._writer._cache_dir).iterdir())
        return Written(files=files, dtype="int32", tokens=self.tokens, block_size=self.block_size,
                       layout={"index.json": "litdata's index of the chunks",
                               "chunk-*.bin": f"int32 token ids, items of {self.block_size} tokens, each document "
                               "ended by EOS: StreamingDataset(FOLDER, item_loader=TokensLoader(block_size="
                               f"{self.block_size}))"})  # fmt: skip

    def abort(self) -> None:
        self._pending = np.zeros(0, np.int32)


class NanoGptBins:
    def __init__(self, folder: Path, vocab_size: int, eos: int) -> None:
        if vocab_size > 2**16:
            raise ValueError(f"a vocabulary of {vocab_size:,} tokens does not fit nanoGPT's uint16 bins")
        self.folder, self.eos, self.vocab_size = folder, eos, vocab_size
        self._train = open(folder / "train.bin", "wb")  # noqa: SIM115 -- held across batches
        self._val = open(folder / "val.bin", "wb")  # noqa: SIM115
        self.tokens = {"train": 0, "val": 0}
        self.instances = {"train": 0, "val": 0}

    def write(self, table: pa.Table, sequences) -> None:
        heldout = table.column("heldout").to_pylist()
        for ids, val in zip(documents_ended(table, sequences, self.eos), heldout, strict=True):
            split = "val" if val else "train"
            (self._val if val else self._train).write(ids_as(ids, np.dtype(np.uint16)))
            self.tokens[split] += len(ids)
            self.instances[split] += 1

    def close(self) -> Written:
        self._train.close()
        self._val.close()
        with open(self.folder / "meta.pkl", "wb") as meta:  # what nanoGPT's train.py reads to size its model
            pickle.dump({"vocab_size": self.vocab_size}, meta)
        return Written(files=list(NANOGPT_FILES), dtype="uint16", tokens=sum(self.tokens.values()),
                       split={"tokens": self.tokens, "instances": self.instances},
                       layout={"train.bin": "uint16 token ids, each document ended by the end-of-text token",
                               "val.bin": "the same, for the held-out documents",
                               "meta.pkl": "{'vocab_size': N}, read by nanoGPT's train.py"})  # fmt: skip

    def abort(self) -> None:
        self._train.close()
        self._val.close()
