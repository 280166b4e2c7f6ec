"""The n-gram baselines of the experiment's report, against the same models written out in plain Python."""

import math

import numpy as np
import pyarrow as pa
import pytest

from miniplm.data.sequences import write_sequences
from miniplm.store.shards import write_parquet
from miniplm.training.ngram import DISCOUNT, ngram_losses


def plain_losses(train: list[list[int]], docs: list[list[int]], vocab: int) -> tuple[float, float]:
    uni = [0] * vocab
    pair: dict[tuple[int, int], int] = {}
    for seq in train:
        for t in seq:
            uni[t] += 1
        for a, b in zip(seq, seq[1:], strict=False):
            pair[(a, b)] = pair.get((a, b), 0) + 1
    n = sum(uni)
    total = {v: sum(c for (a, _), c in pair.items() if a == v) for v in range(vocab)}
    types = {v: sum(1 for (a, _) in pair if a == v) for v in range(vocab)}
    u_sum = b_sum = 0.0
    count = 0
    for doc in docs:
        for v, w in zip(doc, doc[1:], strict=False):
            p_uni = (uni[w] + 1) / (n + vocab)
            if total[v]:
                p = max(pair.get((v, w), 0) - DISCOUNT, 0) / total[v] + DISCOUNT * types[v] / total[v] * p_uni
            else:
                p = p_uni
            u_sum -= math.log(p_uni)
            b_sum -= math.log(p)
            count += 1
    return u_sum / count, b_sum / count


def test_unigram_and_bigram_losses_are_the_models_written_plainly(tmp_path):
    rng = np.random.default_rng(0)
    vocab = 17
    train = [rng.integers(0, vocab, size=rng.integers(1, 40)).tolist() for _ in range(30)]
    target = [rng.integers(0, 9, size=rng.integers(2, 30)).tolist() for _ in range(6)]
    heldout = [rng.integers(0, vocab, size=rng.integers(2, 30)).tolist() for _ in range(4)]
    write_sequences(tmp_path / "train.bin", train)
    eval_dir = tmp_path / "eval"
    write_sequences(eval_dir / "tokens.bin", target + heldout)
    sets = ["target"] * len(target) + ["heldout"] * len(heldout)
    write_parquet(pa.table({"set": sets}), eval_dir / "documents.parquet")
    got = ngram_losses(tmp_path / "train.bin", eval_dir, vocab)
    for name, docs in (("target", target), ("heldout", heldout)):
        uni, bi = plain_losses(train, docs, vocab)
        assert got[name]["unigram"] == pytest.approx(uni, rel=1e-12)
        assert got[name]["bigram"] == pytest.approx(bi, rel=1e-12)
    # text drawn from the bigram statistics the model was fitted on is better predicted by the bigram
    chain = [[t for t in seq] for seq in train[:5]]
    write_sequences(eval_dir / "tokens.bin", chain)
    write_parquet(pa.table({"set": ["target"] * 5}), eval_dir / "documents.parquet")
    again = ngram_losses(tmp_path / "train.bin", eval_dir, vocab)["target"]
    assert again["bigram"] < again["unigram"]
