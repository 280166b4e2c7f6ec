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
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from miniplm.config import CorpusConfig
from miniplm.store import schemas
from miniplm.store.hashing import doc_id, file_sha256, normalize_text, stable_hash, tree_fingerprint
from miniplm.store.shards import ShardWriter, read_json, write_json
from miniplm.store.workdir import Workdir

READER_VERSION = 2
RAW_PREVIEW = 500  # characters of a quarantined row kept for inspection


class CorpusError(ValueError):
    """A source cannot be read at all (missing file, missing column, unknown format)."""


@dataclass
class IngestStats:
    """Where every row of one source went. Duplicates of a document in another shard or source are found in SQL
    (the `documents` view keeps the first copy), so ingest never holds a set the size of the corpus."""

    source: str
    source_key: str
    rows_read: int = 0
    written: int = 0  # rows written as documents (later shards or sources may repeat one)
    duplicates_in_shard: int = 0
    quarantined: int = 0
    truncated: int = 0  # written, cut at max_doc_chars
    parts: int = 0

    def check(self) -> None:
        # Nothing is lost: every row is written, a duplicate, or quarantined.
        assert self.rows_read == self.written + self.duplicates_in_shard + self.quarantined, self


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


def source_fingerprint(spec: str, cfg: CorpusConfig) -> str:
    """Content fingerprint of a source and of the settings that shape its documents: what its shards are named by."""
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
    shaping = {"text_column": cfg.text_column, "max_doc_chars": cfg.max_doc_chars, "long": cfg.long_documents}
    return stable_hash("source", READER_VERSION, location, content, shaping)


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
            if row == 0:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as some editors write
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
    convert = pacsv.ConvertOptions(column_types={text_column: pa.string()})
    try:
        reader = pacsv.open_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise CorpusError(f"{path}: cannot read as CSV: {exc}") from exc
    _read_table_column(str(path), reader.schema.names, text_column)
    row = 0
    for batch in reader:
        for value in batch.column(text_column).to_pylist():
            yield Row(str(path), row, value)
            row += 1


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
    row = 0
    for batch in ds.select_columns([text_column]).with_format("arrow").iter(batch_size=4096):
        for value in batch.column(text_column).to_pylist():
            yield Row(name, row, value)
            row += 1


def _naming(path: Path, kind: str, rows: Iterator[Row]) -> Iterator[Row]:
    """A file that cannot be read at all (corrupt, truncated, not what its name says) fails naming the file and the
    row it got to; a bad row in a readable file is quarantined by the readers themselves."""
    read = 0
    try:
        for item in rows:
            yield item
            read += 1
    except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
        where = f" after {read} rows" if read else ""
        raise CorpusError(f"{path}: cannot read as {kind}{where}: {exc}") from exc


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
        yield from _naming(path, "JSON lines", _read_jsonl(path, text_column))
    elif suffixes == ".parquet":
        yield from _naming(path, "Parquet", _read_parquet(path, text_column))
    elif suffixes in {".csv", ".tsv"}:
        yield from _naming(path, suffixes[1:].upper(), _read_csv(path, text_column))
    elif suffixes == ".txt":
        yield from _naming(path, "text", _read_txt_files([path]))
    else:
        raise CorpusError(
            f"{spec}: unknown format {suffixes!r} (expected .jsonl[.gz], .parquet, .csv, .tsv, "
            ".txt, a folder of .txt files, a saved Hugging Face dataset, or hf:NAME)"
        )


BATCH_ROWS = 4096  # rows per row group, at most
BATCH_BYTES = 16 << 20  # ... and about this many bytes of text


def _truncate(text: str, limit: int) -> str:
    """The first `limit` characters, ending at a line end (else a space) in the last eighth when there is one."""
    head = text[:limit]
    for sep in ("\n", " "):
        cut = head.rfind(sep, limit - limit // 8)
        if cut > 0:
            return head[:cut].rstrip()
    return head


class _Batch:
    """Columns of rows on their way to a shard writer."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.columns: dict[str, list] = {name: [] for name in schema.names}
        self.rows = self.bytes = 0

    def add(self, *values: Any, size: int = 0) -> None:
        for column, value in zip(self.columns.values(), values, strict=True):
            column.append(value)
        self.rows += 1
        self.bytes += size

    def full(self) -> bool:
        return self.rows >= BATCH_ROWS or self.bytes >= BATCH_BYTES

    def flush_to(self, writer: ShardWriter) -> None:
        writer.write(pa.table(self.columns, schema=self.schema))
        self.__init__(self.schema)


def recorded_stats(workdir: Workdir, source_key: str) -> IngestStats:
    """What an ingested source's run recorded (its counts and number of shards)."""
    return IngestStats(**read_json(workdir.ingest_stats(source_key)))


def ingested(workdir: Workdir, source_key: str) -> bool:
    """A source is done when its stats file (written last) and every shard it lists exist."""
    path = workdir.ingest_stats(source_key)
    if not path.exists():
        return False
    return all(workdir.documents(source_key, part).exists() for part in range(read_json(path).get("parts", 0)))


def ingest(spec: str, workdir: Workdir, cfg: CorpusConfig, source_key: str | None = None) -> IngestStats:
    """Read one source, streaming, into document and quarantine shards of bounded size (keyed by content).

    Memory holds one batch of rows and the ids of the current shard, whatever the size of the source. A source
    is done when its stats file exists (written last); an unfinished one is read again from the start.
    """
    source_key = source_key or source_fingerprint(spec, cfg)
    if ingested(workdir, source_key):
        return recorded_stats(workdir, source_key)
    for folder in (workdir.documents_dir(source_key), workdir.quarantine_dir(source_key)):
        shutil.rmtree(folder, ignore_errors=True)  # what a killed ingest left
    stats = IngestStats(source=spec, source_key=source_key)
    max_bytes = cfg.shard_mb << 20
    docs_out = ShardWriter(lambda p: workdir.documents(source_key, p), schemas.DOCUMENT, cfg.shard_documents, max_bytes)
    bad_out = ShardWriter(
        lambda p: workdir.quarantine_dir(source_key) / f"part-{p:05d}.parquet", schemas.QUARANTINE, 1 << 40, max_bytes
    )
    docs, bad = _Batch(schemas.DOCUMENT), _Batch(schemas.QUARANTINE)
    seen: set[str] = set()  # ids in the current documents shard

    def quarantine(r: Row, reason: str) -> None:
        stats.quarantined += 1
        raw = (r.raw if r.raw is not None else repr(r.text))[:RAW_PREVIEW]
        bad.add(r.file, r.row, reason, raw, size=len(raw))
        if bad.full():
            bad.flush_to(bad_out)

    with docs_out, bad_out:
        for r in read_rows(spec, cfg.text_column):
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
            truncated = len(text) > cfg.max_doc_chars
            if truncated:
                if cfg.long_documents == "quarantine":
                    reason = f"document has {len(text):,} characters, more than max_doc_chars={cfg.max_doc_chars:,}"
                    quarantine(r, reason)
                    continue
                text = _truncate(text, cfg.max_doc_chars)
                stats.truncated += 1
            did = doc_id(text)
            if did in seen:
                stats.duplicates_in_shard += 1
                continue
            seen.add(did)
            stats.written += 1
            docs.add(did, text, r.file, r.row, len(text), truncated, size=len(text))
            rows_left, bytes_left = docs_out.room()
            if docs.full() or docs.rows >= rows_left or docs.bytes >= bytes_left:
                part_before = docs_out.part
                docs.flush_to(docs_out)
                if docs_out.part != part_before:
                    seen.clear()  # a new shard: duplicates across shards are the views' job
        docs.flush_to(docs_out)
        bad.flush_to(bad_out)
    stats.parts = len(docs_out.parts)
    stats.check()
    write_json(asdict(stats), workdir.ingest_stats(source_key))
    return stats
