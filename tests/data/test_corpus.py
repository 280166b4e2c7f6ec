import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from miniplm.config import CorpusConfig
from miniplm.data.corpus import CorpusError, ingest, read_rows, source_fingerprint
from miniplm.store.hashing import doc_id, normalize_text
from miniplm.store.workdir import Workdir

CFG = CorpusConfig(paths=["unused"])


def _docs(wd, stats):
    return [r for part in range(stats.parts) for r in pq.read_table(wd.documents(stats.source_key, part)).to_pylist()]


def _quarantine(wd, stats):
    return pq.read_table(wd.quarantine_dir(stats.source_key)).to_pylist()


def test_doc_id_is_content_hash_of_normalized_text():
    assert doc_id(normalize_text("hello\r\nworld  \n")) == doc_id(normalize_text("hello\nworld"))
    assert doc_id(normalize_text("hello world")) != doc_id(normalize_text("hello  world"))


def test_jsonl_bad_rows_are_quarantined_with_file_row_and_reason(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                json.dumps({"text": "first document"}).encode(),
                b'{"text": "broken',
                json.dumps({"body": "wrong field"}).encode(),
                json.dumps({"text": None}).encode(),
                json.dumps({"text": 42}).encode(),
                json.dumps({"text": "   "}).encode(),
                b"\xff\xfe not utf-8",
                json.dumps({"text": "first document  "}).encode(),  # duplicate once normalized
                json.dumps([1, 2]).encode(),
                json.dumps({"text": "second document"}).encode(),
            ]
        )
        + b"\n"
    )
    wd = Workdir.create(tmp_path / "wd")
    stats = ingest(str(path), wd, CFG)
    assert (stats.rows_read, stats.written, stats.duplicates_in_shard, stats.quarantined) == (10, 2, 1, 7)
    bad = {r["row"]: r["reason"] for r in _quarantine(wd, stats)}
    assert bad[1].startswith("invalid JSON")
    assert "no 'text' field" in bad[2] and "body" in bad[2]
    assert bad[3] == "text is null"
    assert bad[4] == "text is int, not a string"
    assert bad[5] == "empty text"
    assert "UTF-8" in bad[6]
    assert "JSON object" in bad[8]
    assert all(r["source"] == str(path) for r in _quarantine(wd, stats))
    docs = _docs(wd, stats)
    assert [(d["row"], d["text"]) for d in docs] == [(0, "first document"), (9, "second document")]
    assert docs[0]["doc_id"] == doc_id("first document")


def test_gzip_parquet_csv_txt_and_saved_dataset_read_the_same_texts(tmp_path):
    texts = ["alpha text", "beta text\nwith two lines", "gamma text"]
    gz = tmp_path / "a.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.writelines(json.dumps({"content": t}) + "\n" for t in texts)
    pqt = tmp_path / "a.parquet"
    pq.write_table(pa.table({"content": texts, "other": [1, 2, 3]}), pqt)
    csv = tmp_path / "a.csv"
    import csv as csvmod

    with open(csv, "w", newline="") as f:
        w = csvmod.writer(f)
        w.writerow(["content"])
        w.writerows([[t] for t in texts])
    folder = tmp_path / "txt"
    folder.mkdir()
    for i, t in enumerate(texts):
        (folder / f"{i}.txt").write_text(t)
    import datasets

    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"content": texts}).save_to_disk(str(saved))
    for spec, column in ((gz, "content"), (pqt, "content"), (csv, "content"), (folder, "text"), (saved, "content")):
        got = [r.text for r in read_rows(str(spec), column)]
        assert got == texts, spec


def test_missing_column_and_unknown_format_are_clear_errors(tmp_path):
    pqt = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": ["x"]}), pqt)
    with pytest.raises(CorpusError, match=r"a\.parquet: no column 'text' \(columns: body\)"):
        list(read_rows(str(pqt)))
    with pytest.raises(CorpusError, match="no such file"):
        list(read_rows(str(tmp_path / "missing.jsonl")))
    odd = tmp_path / "a.xml"
    odd.write_text("<x/>")
    with pytest.raises(CorpusError, match="unknown format"):
        list(read_rows(str(odd)))


def test_source_fingerprint_follows_content_and_settings(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "one"}) + "\n")
    first = source_fingerprint(str(path), CFG)
    assert source_fingerprint(str(path), CFG) == first
    assert source_fingerprint(str(path), CFG.model_copy(update={"text_column": "body"})) != first
    assert source_fingerprint(str(path), CFG.model_copy(update={"max_doc_chars": 10})) != first
    path.write_text(json.dumps({"text": "two"}) + "\n")
    assert source_fingerprint(str(path), CFG) != first


def test_a_large_source_is_written_as_bounded_shards_and_duplicates_are_left_to_the_views(tmp_path):
    """Shards close at shard_documents (or shard_mb); ingest keeps the ids of the current shard only, so a document
    repeated across shards is written twice and counted as a duplicate by the views, once."""
    texts = [f"document number {i}" for i in range(250)] + ["document number 3", "document number 200"]
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    cfg = CorpusConfig(paths=[str(path)], shard_documents=100)
    wd = Workdir.create(tmp_path / "wd")
    stats = ingest(str(path), wd, cfg)
    assert stats.parts == 3
    sizes = [pq.ParquetFile(wd.documents(stats.source_key, p)).metadata.num_rows for p in range(3)]
    assert sizes == [100, 100, 51]  # "document number 200" repeats within the last shard: caught there
    assert (stats.rows_read, stats.written, stats.duplicates_in_shard) == (252, 251, 1)
    assert len({d["doc_id"] for d in _docs(wd, stats)}) == 250


def test_over_long_documents_are_truncated_or_quarantined(tmp_path):
    long_text = ("A line of prose.\n" * 100).strip()
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": long_text}) + "\n" + json.dumps({"text": "short"}) + "\n")
    wd = Workdir.create(tmp_path / "wd")
    cut = ingest(str(path), wd, CorpusConfig(paths=[str(path)], max_doc_chars=200))
    docs = _docs(wd, cut)
    assert cut.truncated == 1 and [d["truncated"] for d in docs] == [True, False]
    assert len(docs[0]["text"]) <= 200 and docs[0]["text"].endswith("prose.")  # cut at a line end
    cfg = CorpusConfig(paths=[str(path)], max_doc_chars=200, long_documents="quarantine")
    kept = ingest(str(path), Workdir.create(tmp_path / "wd2"), cfg)
    assert (kept.written, kept.quarantined) == (1, 1)
    assert "more than max_doc_chars=200" in _quarantine(Workdir.open(tmp_path / "wd2"), kept)[0]["reason"]


def test_a_byte_order_mark_does_not_cost_the_first_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "first"}).encode() + b"\n" + b'{"text": "second"}\n')
    assert [r.text for r in read_rows(str(path))] == ["first", "second"]
