"""Documents -> instances: teacher tokenizer, no special tokens, EOS appended, cut at `max_len`.

An instance never spans two documents, so it depends only on its document: that is what lets new
documents be scored without touching old ones. Long documents are cut near the limit, at a newline or
a sentence end when one lies within the last eighth of the window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from miniplm.hashing import instance_id, stable_hash
from miniplm.models import load_tokenizer, tokenizer_fingerprint
from miniplm.progress import progress_bar
from miniplm.shards import write_parquet

INSTANCE_SCHEMA = pa.schema(
    [
        ("instance_id", pa.string()),
        ("doc_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("n_tokens", pa.int32()),
        ("token_ids", pa.list_(pa.int32())),
    ]
)
TOKENIZE_BATCH = 256  # documents per tokenizer call


def instance_spec(tokenizer_path: str, max_len: int) -> str:
    """Everything an instance's tokens depend on besides its document: tokenizer and cut length."""
    return stable_hash("instances-v1", tokenizer_fingerprint(tokenizer_path), max_len)[:16]


def boundary_kinds(text: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Per token: 2 if it ends a line, 1 if it ends a sentence, else 0."""
    kinds = np.zeros(len(offsets), dtype=np.int8)
    for i, (_, end) in enumerate(offsets):
        if end <= 0:
            continue
        last = text[end - 1]
        if last == "\n" or (end < len(text) and text[end] == "\n"):
            kinds[i] = 2
        elif last in ".!?" and (end == len(text) or text[end].isspace()):
            kinds[i] = 1
    return kinds


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


def tokenize_shard(documents: Path, out: Path, tokenizer_path: str, max_len: int, spec: str) -> dict:
    """Tokenize one documents shard into an instances shard. Returns counts."""
    tokenizer = load_tokenizer(tokenizer_path)
    eos = tokenizer.eos_token_id
    table = pq.read_table(documents, columns=["doc_id", "text"])
    doc_ids, texts = table.column("doc_id").to_pylist(), table.column("text").to_pylist()
    cols: dict[str, list] = {name: [] for name in INSTANCE_SCHEMA.names}
    with progress_bar(len(texts), f"tokenize {documents.stem[:8]}", "doc") as bar:
        for lo in range(0, len(texts), TOKENIZE_BATCH):
            batch = texts[lo : lo + TOKENIZE_BATCH]
            enc = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            for did, text, ids, offsets in zip(
                doc_ids[lo : lo + TOKENIZE_BATCH], batch, enc["input_ids"], enc["offset_mapping"], strict=True
            ):
                tokens = list(ids) + [eos]
                kinds = boundary_kinds(text, offsets)
                for chunk, (a, b) in enumerate(cut_points(kinds, len(tokens), max_len)):
                    cols["instance_id"].append(instance_id(did, chunk, spec))
                    cols["doc_id"].append(did)
                    cols["chunk_index"].append(chunk)
                    cols["n_tokens"].append(b - a)
                    cols["token_ids"].append(tokens[a:b])
            bar.update(len(batch))
    write_parquet(pa.table(cols, schema=INSTANCE_SCHEMA), out)
    return {"documents": len(texts), "instances": len(cols["instance_id"]), "tokens": int(sum(cols["n_tokens"]))}
