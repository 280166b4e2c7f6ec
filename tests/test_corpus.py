import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from miniplm.corpus import CorpusError, ingest, read_rows, source_fingerprint
from miniplm.hashing import doc_id, normalize_text
from miniplm.workdir import Workdir


def _docs(wd, stats):
    return pq.read_table(wd.documents(stats.source_key)).to_pylist()


def _quarantine(wd, stats):
    return pq.read_table(wd.quarantine(stats.source_key)).to_pylist()


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
    stats = ingest(str(path), wd)
    assert (stats.rows_read, stats.documents, stats.duplicates_in_source, stats.quarantined) == (10, 2, 1, 7)
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


def test_source_fingerprint_follows_content(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "one"}) + "\n")
    first = source_fingerprint(str(path), "text")
    assert source_fingerprint(str(path), "text") == first
    assert source_fingerprint(str(path), "body") != first
    path.write_text(json.dumps({"text": "two"}) + "\n")
    assert source_fingerprint(str(path), "text") != first
