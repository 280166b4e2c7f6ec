"""Unigram and bigram models of an arm's training tokens, scored on the evaluation documents.

They say what a student could reach by word counts alone, on its own data: a student whose loss sits near its
arm's unigram loss has learned little beyond token frequencies, and a gap between arms that equals the gap of their
n-gram models says the students measured the mix of their data, not its quality. Both are fitted on exactly the
sequences the student trains on (pairs never span two sequences) and scored on the positions the students are
(every token of a document after its first).

unigram: add-one smoothed counts. bigram: interpolated absolute discounting (d = 0.75) down to that unigram.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from miniplm.data.sequences import read_offsets, read_tokens

DISCOUNT = 0.75


def _pairs(tokens: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(context, next) token pairs inside each sequence."""
    if len(tokens) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    inside = np.ones(len(tokens) - 1, dtype=bool)
    ends = offsets[1:-1] - 1  # the last token of every sequence but the last starts no pair
    inside[ends[(ends >= 0) & (ends < len(inside))]] = False
    t = tokens.astype(np.int64)
    return t[:-1][inside], t[1:][inside]


class NGram:
    """Counts of one token file (sequences with offsets)."""

    def __init__(self, tokens_path: Path, vocab: int) -> None:
        tokens, offsets = np.asarray(read_tokens(tokens_path)), read_offsets(tokens_path)
        self.vocab = vocab
        self.unigram = np.bincount(tokens.astype(np.int64), minlength=vocab)[:vocab].astype(np.float64)
        prev, nxt = _pairs(tokens, offsets)
        self.keys, counts = np.unique(prev * vocab + nxt, return_counts=True)
        self.pair_counts = counts.astype(np.float64)
        contexts = self.keys // vocab
        self.context_total = np.bincount(contexts, weights=self.pair_counts, minlength=vocab)[:vocab]
        self.context_types = np.bincount(contexts, minlength=vocab)[:vocab].astype(np.float64)

    def unigram_logp(self, w: np.ndarray) -> np.ndarray:
        return np.log((self.unigram[w] + 1.0) / (self.unigram.sum() + self.vocab))

    def bigram_logp(self, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        p_uni = np.exp(self.unigram_logp(w))
        keys = v * self.vocab + w
        at = np.searchsorted(self.keys, keys)
        found = (at < len(self.keys)) & (self.keys[np.minimum(at, len(self.keys) - 1)] == keys)
        pair = np.where(found, self.pair_counts[np.minimum(at, len(self.keys) - 1)], 0.0)
        total, types = self.context_total[v], self.context_types[v]
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        p = np.where(seen, np.maximum(pair - DISCOUNT, 0.0) / safe + DISCOUNT * types / safe * p_uni, p_uni)
        return np.log(p)


def ngram_losses(train_tokens: Path, eval_dir: Path, vocab: int) -> dict[str, dict[str, float]]:
    """{eval set: {"unigram": nats/token, "bigram": nats/token}} of n-gram models fitted on `train_tokens`."""
    model = NGram(train_tokens, vocab)
    docs = pq.read_table(eval_dir / "documents.parquet", columns=["set"]).column("set").to_pylist()
    tokens = np.asarray(read_tokens(eval_dir / "tokens.bin")).astype(np.int64)
    offsets = read_offsets(eval_dir / "tokens.bin")
    prev, nxt = _pairs(tokens, offsets)
    # the document of each pair: pairs are in document order, n - 1 per document
    per_doc = np.maximum(np.diff(offsets) - 1, 0)
    doc_of_pair = np.repeat(np.arange(len(per_doc)), per_doc)
    uni, bi = model.unigram_logp(nxt), model.bigram_logp(prev, nxt)
    out = {}
    sets = np.asarray(docs)
    for name in sorted(set(docs)):
        mine = sets[doc_of_pair] == name if len(doc_of_pair) else np.zeros(0, bool)
        if mine.any():
            out[name] = {"unigram": float(-uni[mine].mean()), "bigram": float(-bi[mine].mean())}
    return out
