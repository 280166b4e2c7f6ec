import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from miniplm.data.instances import TokenizerRef, boundary_kinds, cut_points, instance_spec, tokenize_part
from miniplm.store.hashing import doc_id
from miniplm.store.models import load_tokenizer


@pytest.mark.parametrize(
    "n_tokens,max_len", [(1, 8), (2, 8), (8, 8), (9, 8), (17, 8), (100, 16), (1000, 64), (5, 3), (7, 3)]
)
def test_cut_points_cover_everything_within_limit(n_tokens, max_len):
    rng = np.random.default_rng(n_tokens)
    kinds = rng.choice([0, 0, 0, 1, 2], size=max(n_tokens - 1, 0)).astype(np.int8)
    spans = cut_points(kinds, n_tokens, max_len)
    assert spans[0][0] == 0 and spans[-1][1] == n_tokens
    assert all(a < b for a, b in spans)
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False))
    assert all(b - a <= max_len for a, b in spans)
    if n_tokens >= 2:
        assert all(b - a >= 2 for a, b in spans)


def test_cut_prefers_a_line_end_near_the_limit():
    kinds = np.zeros(99, dtype=np.int8)
    kinds[57] = 2  # token 57 ends a line: cut after it (span of 58 tokens)
    kinds[60] = 1  # a sentence end closer to the limit loses to the line end
    assert cut_points(kinds, 100, 64)[0] == (0, 58)
    kinds[57] = 0
    assert cut_points(kinds, 100, 64)[0] == (0, 61)
    kinds[60] = 0
    kinds[10] = 2  # too far from the limit: hard cut
    assert cut_points(kinds, 100, 64)[0] == (0, 64)


def test_boundary_kinds_marks_line_and_sentence_ends():
    text = "One. Two\nThree"
    ends = np.array([3, 4, 8, 9, 14])  # byte offsets where each token ends
    assert boundary_kinds(text.encode(), ends).tolist() == [0, 1, 2, 2, 0]
    # a sentence end before a non-ASCII space (U+3000) counts; before a letter it does not
    text = "Fin.\u3000Next.x"
    assert boundary_kinds(text.encode(), np.array([4, 7, 12, 13])).tolist() == [1, 0, 0, 0]


def test_byte_level_and_offset_token_ends_agree(models):
    """The fast path (byte lengths from the vocabulary) gives the token ends the tokenizer's offsets give, except
    inside a multi-byte character (offsets are per character), and so the same cut preferences."""
    from miniplm.data.instances import TokenEnds, TokenizerRef

    ends_of = TokenEnds(TokenizerRef.of(str(models["teacher"])))
    assert ends_of.byte_lengths is not None
    for text in ["Plain ASCII. Two lines\nhere.", "Ünïcödé — “quotes” and 日本語.", "<|endoftext|> inside"]:
        enc = ends_of.backend.encode(text, add_special_tokens=False)
        fast = np.cumsum(ends_of.byte_lengths[np.asarray(enc.ids)])
        slow = ends_of._ends_from_offsets(text, enc.offsets)
        raw = text.encode()
        whole_chars = np.array([e == len(raw) or (raw[e] & 0xC0) != 0x80 for e in fast])
        assert whole_chars.sum() >= len(fast) // 2
        assert fast[whole_chars].tolist() == slow[whole_chars].tolist()
        assert boundary_kinds(raw, fast).tolist() == boundary_kinds(raw, slow).tolist()
        assert fast[-1] == len(raw)


def test_tokenize_shard_instances_reassemble_the_document(tmp_path, models):
    tok_path = str(models["teacher"])
    texts = ["Short one.", "A longer document.\n" * 40 + "It ends here."]
    docs = pa.table({"doc_id": [doc_id(t) for t in texts], "text": texts})
    pq.write_table(docs, tmp_path / "docs.parquet")
    spec = instance_spec(tok_path, 32)
    ref = TokenizerRef.of(tok_path)
    stats = tokenize_part(tmp_path / "docs.parquet", tmp_path / "inst.parquet", ref, 32, spec)
    rows = pq.read_table(tmp_path / "inst.parquet").to_pylist()
    assert stats.documents == 2 and stats.instances == len(rows)
    tok = load_tokenizer(tok_path)
    for d, text in zip(docs.column("doc_id").to_pylist(), texts, strict=True):
        chunks = sorted((r for r in rows if r["doc_id"] == d), key=lambda r: r["chunk_index"])
        joined = [t for r in chunks for t in r["token_ids"]]
        assert joined == tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert all(r["n_tokens"] == len(r["token_ids"]) <= 32 for r in chunks)
    assert len({r["instance_id"] for r in rows}) == len(rows)
    # the same document and spec always give the same ids; another max_len gives other ids
    again = tokenize_part(tmp_path / "docs.parquet", tmp_path / "inst2.parquet", ref, 32, spec)
    assert again == stats
    assert pq.read_table(tmp_path / "inst2.parquet").column("instance_id").to_pylist() == [
        r["instance_id"] for r in rows
    ]
    assert instance_spec(tok_path, 64) != spec
