"""Documents -> instances: teacher tokenizer, no special tokens, EOS appended, cut at `max_len`.

An instance never spans two documents, so it depends only on its document: that is what lets new
documents be scored without touching old ones. Long documents are cut near the limit, at a line end or
a sentence end when one lies within the last eighth of the window.

Tokenizing runs at the tokenizer's own speed: documents go to the tokenizer in batches, and everything around
the call (token ends, cut points, Arrow columns) is numpy over whole documents, not Python over tokens. For
byte-level BPE tokenizers (GPT-2, Llama 3, Qwen, SmolLM) a token's end is the running sum of its byte length;
other tokenizers report offsets, which is slower.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from miniplm.progress import progress_bar
from miniplm.store import schemas
from miniplm.store.hashing import instance_id, stable_hash
from miniplm.store.models import load_tokenizer, tokenizer_fingerprint
from miniplm.store.shards import temporary_name, write_json

BATCH_DOCUMENTS = 512  # documents per tokenizer call
BATCH_CHARS = 4 << 20  # ... or about this many characters, whichever comes first
POOL_MIN_BYTES = 64 << 20  # below this much work, starting processes (and loading the tokenizer in each) costs more
ASCII_SPACE = np.array([9, 10, 11, 12, 13, 28, 29, 30, 31, 32], dtype=np.uint8)  # str.isspace() below 0x80
SENTENCE_END = np.array([ord("."), ord("!"), ord("?")], dtype=np.uint8)


def instance_spec(tokenizer_path: str, max_len: int) -> str:
    """Everything an instance's tokens depend on besides its document: tokenizer, cut rule and length."""
    return stable_hash("instances-v2", tokenizer_fingerprint(tokenizer_path), max_len)[:16]


def boundary_kinds(text: bytes, ends: np.ndarray) -> np.ndarray:
    """Per token, from the byte offset where it ends in the UTF-8 text: 2 if it ends a line (the last byte is a
    newline, or the next is), 1 if it ends a sentence (., ! or ? followed by whitespace or the end), else 0."""
    b = np.frombuffer(text, dtype=np.uint8)
    n = len(b)
    if n == 0 or len(ends) == 0:
        return np.zeros(len(ends), dtype=np.int8)
    inside = ends < n
    last = b[np.clip(ends - 1, 0, n - 1)]
    following = np.where(inside, b[np.clip(ends, 0, n - 1)], 0)
    started = ends > 0
    line = started & ((last == 10) | (inside & (following == 10)))
    sentence = started & ~line & np.isin(last, SENTENCE_END)
    spaced = ~inside | np.isin(following, ASCII_SPACE)
    for i in np.flatnonzero(sentence & ~spaced & (following >= 0xC2)):  # a non-ASCII space (NBSP, U+3000, ...)?
        spaced[i] = text[ends[i] : ends[i] + 4].decode("utf-8", errors="ignore")[:1].isspace()
    return (2 * line + (sentence & spaced)).astype(np.int8)


def cut_points(kinds: np.ndarray, n_tokens: int, max_len: int) -> list[tuple[int, int]]:
    """Chunk [0, n_tokens) into spans of at most `max_len`, preferring line then sentence ends.

    `kinds[i]` describes token i (tokens past len(kinds), such as EOS, are never cut after). Every span
    has at least two tokens when the document does, so every instance has a predicted position.
    """
    if max_len < 3:  # with 2, an odd-length document would leave a one-token piece
        raise ValueError("max_len must be at least 3")
    slack = max(1, max_len // 8)
    spans: list[tuple[int, int]] = []
    start = 0
    while n_tokens - start > max_len:
        hard = start + max_len
        window = kinds[max(hard - slack, start + 1) - 1 : hard]  # token before the cut ends a unit
        cut = hard
        for kind in (2, 1):
            hits = np.flatnonzero(window == kind)
            if hits.size:
                cut = max(hard - slack, start + 1) + int(hits[-1])
                break
        if n_tokens - cut == 1:  # never leave a one-token tail: it has nothing to predict
            cut -= 1
        spans.append((start, cut))
        start = cut
    spans.append((start, n_tokens))
    return spans


@dataclass(frozen=True)
class TokenizerRef:
    """What a tokenizing process needs, and nothing heavier: the fast tokenizer as JSON, its EOS id, and the bytes
    of each token id when the tokenizer is byte-level (a worker never imports transformers or torch)."""

    backend_json: str
    eos: int
    byte_lengths: np.ndarray | None

    @classmethod
    def of(cls, tokenizer_path: str) -> TokenizerRef:
        tokenizer = load_tokenizer(tokenizer_path)
        backend = tokenizer.backend_tokenizer.to_str()
        return cls(backend, tokenizer.eos_token_id, _byte_level_lengths(backend, tokenizer.get_vocab()))


def _byte_level_lengths(backend_json: str, vocab: dict[str, int]) -> np.ndarray | None:
    """Bytes per token id for a byte-level BPE tokenizer (each character of a vocabulary entry is one byte), or
    None for any other kind."""
    spec = json.loads(backend_json)
    if (spec.get("decoder") or {}).get("type") != "ByteLevel" or spec.get("normalizer"):
        return None
    lengths = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
    added = {t["id"]: t["content"] for t in spec.get("added_tokens", [])}
    for token, idx in vocab.items():
        lengths[idx] = len(added[idx].encode()) if idx in added else len(token)
    return lengths


class TokenEnds:
    """Token ids and where each token ends in its document's UTF-8 bytes."""

    def __init__(self, ref: TokenizerRef) -> None:
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_str(ref.backend_json)
        self.byte_lengths = ref.byte_lengths

    def encode(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(token ids, byte ends) per text."""
        encodings = self.backend.encode_batch(texts, add_special_tokens=False)
        out = []
        for text, enc in zip(texts, encodings, strict=True):
            ids = np.asarray(enc.ids, dtype=np.int32)
            ends = None
            if self.byte_lengths is not None:
                ends = np.cumsum(self.byte_lengths[ids])
                if len(ends) and ends[-1] != len(text.encode()):
                    ends = None  # the vocabulary table does not describe this text (a pre-tokenizer adds a space)
            if ends is None:
                ends = self._ends_from_offsets(text, enc.offsets)
            out.append((ids, ends))
        return out

    @staticmethod
    def _ends_from_offsets(text: str, offsets: list[tuple[int, int]]) -> np.ndarray:
        char_ends = np.asarray([end for _, end in offsets], dtype=np.int64)
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        widths = 1 + (codepoints >= 0x80) + (codepoints >= 0x800) + (codepoints >= 0x10000)
        byte_of_char = np.concatenate([[0], np.cumsum(widths)])
        return byte_of_char[np.clip(char_ends, 0, len(codepoints))]


@dataclass
class TokenizeStats:
    documents: int = 0
    instances: int = 0
    tokens: int = 0


def _instances_of_batch(
    ends_of: TokenEnds, eos: int, doc_ids: list[str], texts: list[str], max_len: int, spec: str
) -> pa.Table:
    encoded = ends_of.encode(texts)
    n_tokens = np.fromiter((len(ids) + 1 for ids, _ in encoded), dtype=np.int64, count=len(encoded))
    flat = np.empty(int(n_tokens.sum()), dtype=np.int32)  # every document's tokens then EOS, end to end
    doc_start = np.concatenate([[0], np.cumsum(n_tokens)[:-1]])
    ids_col, doc_col, chunk_col, bounds = [], [], [], [0]
    for did, text, (ids, ends), start, n in zip(doc_ids, texts, encoded, doc_start, n_tokens, strict=True):
        flat[start : start + n - 1] = ids
        flat[start + n - 1] = eos
        # only a document longer than max_len needs its cut points, and so its boundaries
        spans = [(0, int(n))] if n <= max_len else cut_points(boundary_kinds(text.encode(), ends), int(n), max_len)
        for chunk, (_, b) in enumerate(spans):
            ids_col.append(instance_id(did, chunk, spec))
            doc_col.append(did)
            chunk_col.append(chunk)
            bounds.append(int(start) + b)
    offsets = np.asarray(bounds, dtype=np.int32)
    return pa.table(
        {
            "instance_id": pa.array(ids_col, pa.string()),
            "doc_id": pa.array(doc_col, pa.string()),
            "chunk_index": pa.array(chunk_col, pa.int32()),
            "n_tokens": pa.array(np.diff(offsets), pa.int32()),
            "token_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
        },
        schema=schemas.INSTANCE,
    )


def _document_batches(documents: Path):
    """(doc_ids, texts) in batches of at most BATCH_DOCUMENTS documents or about BATCH_CHARS characters."""
    pf = pq.ParquetFile(documents)
    ids: list[str] = []
    texts: list[str] = []
    chars = 0
    for batch in pf.iter_batches(columns=["doc_id", "text"], batch_size=BATCH_DOCUMENTS):
        for did, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            ids.append(did)
            texts.append(text)
            chars += len(text)
            if len(ids) >= BATCH_DOCUMENTS or chars >= BATCH_CHARS:
                yield ids, texts
                ids, texts, chars = [], [], 0
    if ids:
        yield ids, texts


def stats_path(out: Path) -> Path:
    return out.with_suffix(".stats.json")


def tokenize_part(documents: Path, out: Path, tokenizer: TokenizerRef, max_len: int, spec: str) -> TokenizeStats:
    """Tokenize one documents shard into an instances shard, batch by batch. Returns its counts.

    The shard is done when it exists: its counts are written first, then it is renamed into place.
    """
    if out.exists():
        return TokenizeStats(**json.loads(stats_path(out).read_text()))
    ends_of = TokenEnds(tokenizer)
    stats = TokenizeStats()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(out)
    total = pq.ParquetFile(documents).metadata.num_rows
    with (
        pq.ParquetWriter(tmp, schemas.INSTANCE, compression="zstd") as writer,
        progress_bar(
            total, f"tokenize {documents.parent.name.removeprefix('source_key=')[:8]}/{documents.stem}", "doc"
        ) as bar,
    ):
        for doc_ids, texts in _document_batches(documents):
            table = _instances_of_batch(ends_of, tokenizer.eos, doc_ids, texts, max_len, spec)
            writer.write_table(table)
            stats.documents += len(doc_ids)
            stats.instances += table.num_rows
            stats.tokens += int(pc.sum(table.column("n_tokens")).as_py() or 0)
            bar.update(len(doc_ids))
    write_json(asdict(stats), stats_path(out))
    os.replace(tmp, out)
    return stats


def _single_threaded_tokenizer() -> None:
    # One process per shard uses the cores; the tokenizer's own threads would only compete with it.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def tokenize_parts(jobs: list[tuple[Path, Path]], tokenizer_path: str, max_len: int, spec: str) -> TokenizeStats:
    """Tokenize (documents shard, instances shard) pairs, with a process per shard when there are several."""
    total = TokenizeStats()
    todo = [(d, o) for d, o in jobs if not o.exists()]
    workers = min(len(todo), os.cpu_count() or 1)
    if sum(d.stat().st_size for d, _ in todo) < POOL_MIN_BYTES:
        workers = 1
    tokenizer = TokenizerRef.of(tokenizer_path)
    run = functools.partial(tokenize_part, tokenizer=tokenizer, max_len=max_len, spec=spec)
    if workers <= 1:
        results = [run(d, o) for d, o in jobs]
    else:
        context = multiprocessing.get_context("spawn")  # never fork a process that holds threads and sockets
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded_tokenizer) as pool:
            futures = {o: pool.submit(run, d, o) for d, o in todo}
            results = [futures[o].result() if o in futures else run(d, o) for d, o in jobs]
    for r in results:
        total.documents += r.documents
        total.instances += r.instances
        total.tokens += r.tokens
    return total
