"""Reading a corpus: every input row ends up a document, a counted duplicate, or quarantined with a reason.

Supported sources:
  * JSONL (``.jsonl``, ``.jsonl.gz``, ``.json``/``.ndjson`` one object per line)
  * Parquet (``.parquet``), CSV/TSV (``.csv``, ``.tsv``)
  * a ``.txt`` file or a folder of ``.txt`` files (one document per file)
  * a Hugging Face dataset: a folder written by ``save_to_disk``, or ``hf:NAME[:SPLIT]`` from the hub
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from miniplm.hashing import doc_id, file_sha256, normalize_text, stable_hash, tree_fingerprint
from miniplm.shards import write_json, write_parquet
from miniplm.workdir import Workdir

READER_VERSION = 1
RAW_PREVIEW = 500  # characters of a quarantined row kept for inspection

DOCUMENT_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("row", pa.int64()),
        ("n_chars", pa.int64()),
        ("source_key", pa.string()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [("source", pa.string()), ("row", pa.int64()), ("reason", pa.string()), ("raw", pa.string())]
)


class CorpusError(ValueError):
    """A source cannot be read at all (missing file, missing column, unknown format)."""


@dataclass
class IngestStats:
    source: str
    source_key: str
    rows_read: int = 0
    documents: int = 0
    duplicates_in_source: int = 0
    quarantined: int = 0

    def check(self) -> None:
        # Nothing is lost: every row is a document, a duplicate, or quarantined.
        assert self.rows_read == self.documents + self.duplicates_in_source + self.quarantined, self


@dataclass
class Row:
    """One raw input row: where it came from and either its text or why it has none."""

    file: str
    row: int
    text: Any
    problem: str | None = None
    raw: str | None = None


def is_hub_spec(spec: str) -> bool:
    return spec.startswith("hf:")


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json"))


def source_fingerprint(spec: str, text_column: str) -> str:
    """Content fingerprint of a source: what its shard's name (and cache key) is made of."""
    if is_hub_spec(spec):
        ds = _load_hub(spec)
        content = ds._fingerprint
        location = spec
    else:
        path = Path(spec).expanduser().resolve()
        if not path.exists():
            raise CorpusError(f"{spec}: no such file or directory")
        content = tree_fingerprint(path) if path.is_dir() else file_sha256(path)
        location = str(path)
    return stable_hash("source", READER_VERSION, location, content, text_column)


def _load_hub(spec: str):
    import datasets

    name, _, split = spec[3:].partition(":")
    try:
        return datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # network, unknown dataset, unknown split
        raise CorpusError(f"{spec}: cannot load Hugging Face dataset: {exc}") from exc


def _read_jsonl(path: Path, text_column: str) -> Iterator[Row]:
    name = str(path)
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        for row, line in enumerate(f):
            try:
                decoded = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Row(
                    name, row, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})", repr(line[:RAW_PREVIEW])
                )
                continue
            if not decoded.strip():
                yield Row(name, row, None, "blank line", decoded)
                continue
            try:
                obj = json.loads(decoded)
            except json.JSONDecodeError as exc:
                yield Row(name, row, None, f"invalid JSON: {exc.msg} at column {exc.colno}", decoded)
                continue
            if not isinstance(obj, dict):
                yield Row(name, row, None, f"expected a JSON object, got {type(obj).__name__}", decoded)
                continue
            if text_column not in obj:
                yield Row(
                    name, row, None, f"no {text_column!r} field (fields: {', '.join(sorted(obj))[:200]})", decoded
                )
                continue
            yield Row(name, row, obj[text_column], raw=decoded)


def _read_table_column(name: str, table_columns: list[str], text_column: str) -> None:
    if text_column not in table_columns:
        raise CorpusError(
            f"{name}: no column {text_column!r} (columns: {', '.join(table_columns)}); pass --text-column"
        )


def _read_parquet(path: Path, text_column: str) -> Iterator[Row]:
    pf = pq.ParquetFile(path)
    _read_table_column(str(path), pf.schema_arrow.names, text_column)
    row = 0
    for batch in pf.iter_batches(columns=[text_column], batch_size=4096):
        for value in batch.column(0).to_pylist():
            yield Row(str(path), row, value)
            row += 1


def _read_csv(path: Path, text_column: str) -> Iterator[Row]:
    import pyarrow.csv as pacsv

    parse = pacsv.ParseOptions(delimiter="\t" if path.suffix == ".tsv" else ",", newlines_in_values=True)
    table = pacsv.read_csv(path, parse_options=parse)
    _read_table_column(str(path), table.column_names, text_column)
    for row, value in enumerate(table.column(text_column).to_pylist()):
        yield Row(str(path), row, value)


def _read_txt_files(files: list[Path]) -> Iterator[Row]:
    for file in files:
        name = str(file)
        try:
            text = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Row(name, 0, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        yield Row(name, 0, text)


def _read_dataset(ds, name: str, text_column: str) -> Iterator[Row]:
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        for split in ds:
            yield from _read_dataset(ds[split], f"{name}[{split}]", text_column)
        return
    _read_table_column(name, ds.column_names, text_column)
    for row, value in enumerate(ds[text_column]):
        yield Row(name, row, value)


def read_rows(spec: str, text_column: str = "text") -> Iterator[Row]:
    """Every raw row of a source, in order, with its provenance."""
    if is_hub_spec(spec):
        yield from _read_dataset(_load_hub(spec), spec, text_column)
        return
    path = Path(spec).expanduser().resolve()
    if not path.exists():
        raise CorpusError(f"{spec}: no such file or directory")
    if path.is_dir():
        if _is_saved_dataset(path):
            import datasets

            yield from _read_dataset(datasets.load_from_disk(str(path)), str(path), text_column)
            return
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise CorpusError(f"{spec}: folder holds no .txt files and is not a saved Hugging Face dataset")
        yield from _read_txt_files(files)
        return
    suffixes = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffixes in {".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz"}:
        yield from _read_jsonl(path, text_column)
    elif suffixes == ".parquet":
        yield from _read_parquet(path, text_column)
    elif suffixes in {".csv", ".tsv"}:
        yield from _read_csv(path, text_column)
    elif suffixes == ".txt":
        yield from _read_txt_files([path])
    else:
        raise CorpusError(
            f"{spec}: unknown format {suffixes!r} (expected .jsonl[.gz], .parquet, .csv, .tsv, "
            ".txt, a folder of .txt files, a saved Hugging Face dataset, or hf:NAME)"
        )


def ingest(spec: str, workdir: Workdir, text_column: str = "text", source_key: str | None = None) -> IngestStats:
    """Read one source into a documents shard and a quarantine shard (both keyed by content)."""
    source_key = source_key or source_fingerprint(spec, text_column)
    stats = IngestStats(source=spec, source_key=source_key)
    docs: dict[str, list] = {name: [] for name in DOCUMENT_SCHEMA.names}
    bad: dict[str, list] = {name: [] for name in QUARANTINE_SCHEMA.names}
    seen: set[str] = set()

    def quarantine(r: Row, reason: str) -> None:
        stats.quarantined += 1
        bad["source"].append(r.file)
        bad["row"].append(r.row)
        bad["reason"].append(reason)
        bad["raw"].append((r.raw if r.raw is not None else repr(r.text))[:RAW_PREVIEW])

    for r in read_rows(spec, text_column):
        stats.rows_read += 1
        if r.problem:
            quarantine(r, r.problem)
            continue
        if not isinstance(r.text, str):
            quarantine(r, "text is null" if r.text is None else f"text is {type(r.text).__name__}, not a string")
            continue
        text = normalize_text(r.text)
        if not text.strip():
            quarantine(r, "empty text")
            continue
        did = doc_id(text)
        if did in seen:
            stats.duplicates_in_source += 1
            continue
        seen.add(did)
        stats.documents += 1
        for key, value in zip(DOCUMENT_SCHEMA.names, (did, text, r.file, r.row, len(text), source_key), strict=True):
            docs[key].append(value)

    stats.check()
    write_parquet(pa.table(docs, schema=DOCUMENT_SCHEMA), workdir.documents(source_key))
    write_parquet(pa.table(bad, schema=QUARANTINE_SCHEMA), workdir.quarantine(source_key))
    write_json(asdict(stats), workdir.ingest_stats(source_key))
    return stats
