"""Hand a kept corpus to a trainer (`miniplm export`): a selection's instances as text shards, a `datasets` folder,
token files in a trainer's tokenizer, or the token formats Megatron-Core, nanoGPT and litdata (litgpt) open as they
are, with `export.json` saying what was written and where it came from.

It streams: DuckDB orders the selection (spilling to disk past its memory limit) and hands over record batches,
each decoded and written before the next is read, so memory holds one batch whatever the selection's size. It is
atomic: everything is written into a hidden folder beside the destination, `export.json` last, and the folder is
renamed into place only once the count of written instances matches the selection's; a killed export leaves only
the hidden folder, which the next export to the same destination clears away.
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from miniplm.data.student_tokenizer import TEACHER, resolve_student_tokenizer
from miniplm.progress import progress_bar
from miniplm.selection.export_formats import (
    FORMATS,
    INDEX_FILE,
    TEXT_SCHEMA,
    TOKENS_FILE,
    HfDataset,
    JsonlShards,
    ParquetShards,
    TokenFile,
    Written,
)
from miniplm.selection.export_header import ExportHeader, TokenHeader
from miniplm.selection.members import decode_instances, encode_instances
from miniplm.selection.select import SelectionRecord
from miniplm.selection.trainer_formats import LitdataTokens, MegatronIndexed, NanoGptBins
from miniplm.store.catalog import load_sql, open_readonly
from miniplm.store.manifest import RunManifest
from miniplm.store.models import load_tokenizer
from miniplm.store.shards import read_json, write_json
from miniplm.store.workdir import Workdir
from miniplm.version import __version__

BATCH_ROWS = 2048
SHARD_ROWS = 100_000
HEADER = "export.json"
TOKEN_FORMATS = ("tokens", "megatron", "nanogpt", "litdata")
# formats that mark where documents end: each document's kept instances together, ended by EOS
BY_DOCUMENT = ("megatron", "nanogpt", "litdata")
VAL_FRACTION = 0.005
BLOCK_SIZE = 2049  # litgpt's: a 2,048-token context and the next token to predict


class ExportError(ValueError):
    """An export that cannot be made as asked (no selection, a destination in the way, an unknown format)."""


def export_selection(
    workdir: str | Path,
    to: str | Path,
    format: str = "parquet",  # noqa: A002 -- the CLI's --format
    tokenizer: str | None = None,
    selection_id: str | None = None,
    shuffle_seed: int | None = None,
    overwrite: bool = False,
    shard_rows: int = SHARD_ROWS,
    batch_rows: int = BATCH_ROWS,
    val_fraction: float = VAL_FRACTION,
    block_size: int = BLOCK_SIZE,
) -> ExportHeader:
    """Write a selection (the current one by default) to `to` in `format`; returns what export.json holds, and where.

    Text formats (parquet, jsonl, hf) hold each instance's text as the teacher's tokens decode, best first or, with
    `shuffle_seed`, in a seeded shuffle. `tokens` holds them in `tokenizer` (default: the teacher's own ids, as
    scored), one instance to one sequence, each ending a document with the tokenizer's EOS. `megatron`, `nanogpt` and
    `litdata` hold the same ids with each document's kept instances together (documents best first or shuffled,
    each ended by EOS); `nanogpt`
    puts whole documents holding `val_fraction` of the instances in `val.bin`; `litdata` writes items of
    `block_size` tokens.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
    if tokenizer is not None and format not in TOKEN_FORMATS:
        raise ExportError(f"--tokenizer applies to the token formats only (the {format} export holds text)")
    if not 0 <= val_fraction < 1:
        raise ExportError(f"--val-fraction {val_fraction}: must be at least 0 and below 1")
    if block_size < 1:
        raise ExportError(f"--block-size {block_size}: must be at least 1")
    wd = Workdir.open(workdir)
    if not wd.manifest.exists():
        raise ExportError(f"{wd.root}: no run has finished here yet (no manifest.json); run `miniplm run` first")
    manifest = RunManifest.model_validate(read_json(wd.manifest))
    target = Path(to).expanduser().resolve()
    if target.is_relative_to(wd.root):
        raise ExportError(f"{to}: inside the work directory {wd.root}; export elsewhere")
    if target.exists() and not overwrite:
        raise ExportError(f"{target} already exists; pass --overwrite to replace it")
    con = open_readonly(wd)
    try:
        selection = _selection(con, wd, selection_id or manifest.selection_id)
        sid = selection.selection_id
        n_members = _member_count(con, sid)
        for stale in target.parent.glob(f".{target.name}.partial-*"):  # a killed export's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        teacher_tok = load_tokenizer(manifest.teacher.path)
        token_tok, token_spec = (_token_tokenizer(wd, manifest, tokenizer) if format in TOKEN_FORMATS
                                 else (None, None))  # fmt: skip
        vocab_size = len(token_tok or teacher_tok)
        if format == "nanogpt" and vocab_size > 2**16:
            raise ExportError(
                f"--format nanogpt writes uint16 ids, and the {token_spec} tokenizer has {vocab_size:,} tokens; "
                f"pass --tokenizer with a vocabulary of at most 65,536 (a path, a hub id, or train:N)"
            )
        eos = (token_tok or teacher_tok).eos_token_id
        partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}"
        partial.mkdir(parents=True)
        start = time.perf_counter()
        writer = None
        try:
            writer = _writer(format, partial, n_members, vocab_size, eos, shard_rows, block_size)
            query, params = _query(format, sid, shuffle_seed, n_members, val_fraction)
            counts = _stream(con, query, params, teacher_tok, token_tok, writer, n_members, batch_rows, format)
            if counts["instances"] != n_members:
                raise ExportError(
                    f"selection {sid} has {n_members:,} members but only {counts['instances']:,} are instances of "
                    f"this work directory's current corpus (its sources changed since); nothing was written"
                )
            wrote = writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            shutil.rmtree(partial, ignore_errors=True)
            raise
    finally:
        con.close()
    header = ExportHeader(
        format=format,
        files=wrote.files,
        instances=counts["instances"],
        teacher_tokens=counts["teacher_tokens"],
        text_bytes=counts["text_bytes"],
        order="shuffled" if shuffle_seed is not None else "rank",
        shuffle_seed=shuffle_seed,
        columns=None if format in TOKEN_FORMATS else TEXT_SCHEMA.names,
        tokens=_token_header(token_spec, token_tok or teacher_tok, wrote) if format in TOKEN_FORMATS else None,
        selection=selection,
        workdir=str(wd.root),
        workdir_id=wd.identity,
        teacher=manifest.teacher,
        reference=manifest.reference,
        miniplm_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - start, 3),
        path=str(target),
    )
    write_json(header.file_json(), partial / HEADER)
    _publish(partial, target)
    return header


def _selection(con, wd: Workdir, selection_id: str | None) -> SelectionRecord:
    if not selection_id:
        raise ExportError(f"{wd.root}: no selection yet; run `miniplm run` first")
    rows = con.sql(load_sql("selection_record"), params={"id": selection_id}).to_arrow_table()
    if rows.num_rows == 0:
        raise ExportError(
            f"{wd.root}: no selection {selection_id!r}; "
            f"`miniplm sql \"select selection_id, alpha, n_selected, created_at from selections\"` lists them"
        )
    return SelectionRecord.model_validate(rows.to_pylist()[0])


def _member_count(con, selection_id: str) -> int:
    return int(con.sql(load_sql("count_selection_members"), params={"id": selection_id}).fetchall()[0][0])


def _token_tokenizer(wd: Workdir, manifest: RunManifest, spec: str | None):
    """The tokenizer a token export is written in (None: the teacher's ids as they are), and how to name it."""
    if spec in (None, "", TEACHER):
        return None, manifest.teacher.spec
    path = resolve_student_tokenizer(wd, manifest, spec)
    try:
        return load_tokenizer(path), spec
    except Exception as exc:  # a path that holds no tokenizer, a hub id not found, a tokenizer without EOS
        raise ExportError(f"--tokenizer {spec}: cannot load a tokenizer ({str(exc).splitlines()[0]})") from exc


def _writer(format: str, folder: Path, n_members: int, vocab_size: int, eos: int, shard_rows: int,
            block_size: int):  # fmt: skip  # noqa: A002
    if format == "litdata":
        return LitdataTokens(folder, eos, block_size)
    if format == "megatron":
        return MegatronIndexed(folder, vocab_size, eos)
    if format == "nanogpt":
        return NanoGptBins(folder, vocab_size, eos)
    if format == "parquet":
        return ParquetShards(folder, shard_rows)
    if format == "jsonl":
        return JsonlShards(folder, shard_rows)
    if format == "hf":
        return HfDataset(folder, shard_rows, folder.with_name(folder.name + "-staging"))
    return TokenFile(folder, n_members, vocab_size)


def _query(format: str, sid: str, shuffle_seed: int | None, n_members: int, val_fraction: float):  # noqa: A002
    """The query that hands a format its instances, and its parameters."""
    params = {"selection_id": sid, "shuffle": shuffle_seed is not None, "seed": shuffle_seed or 0}
    if format not in BY_DOCUMENT:
        return load_sql("kept_instances"), params
    n_heldout = max(1, round(val_fraction * n_members)) if format == "nanogpt" and val_fraction > 0 else 0
    return load_sql("kept_instances_by_document"), params | {"n_heldout": n_heldout, "heldout_seed": 0}


def _stream(con, query: str, params: dict, teacher_tok, token_tok, writer, total: int, batch_rows: int,
            format: str) -> dict:  # fmt: skip  # noqa: A002
    reader = con.sql(query, params=params).to_arrow_reader(batch_rows)
    needs_text = format not in TOKEN_FORMATS or token_tok is not None
    counts = {"instances": 0, "teacher_tokens": 0, "text_bytes": 0 if needs_text else None}
    with progress_bar(total, "export", "instances") as bar:
        for batch in reader:
            ids = batch.column("token_ids")
            table, sequences = pa.Table.from_batches([batch.drop_columns(["token_ids"])]), ids
            if needs_text:
                texts, ends_doc = decode_instances(teacher_tok, ids.to_pylist())
                counts["text_bytes"] += sum(len(t.encode()) for t in texts)
                if format not in TOKEN_FORMATS:
                    table = table.append_column("text", pa.array(texts, pa.string()))
                    table = table.append_column("ends_document", pa.array(ends_doc, pa.bool_())).cast(TEXT_SCHEMA)
                if token_tok is not None:  # the text in another tokenizer, one instance to one sequence
                    sequences = encode_instances(token_tok, texts, ends_doc)
            writer.write(table, sequences)  # token ids as scored where no other tokenizer is asked for
            counts["instances"] += batch.num_rows
            counts["teacher_tokens"] += len(ids.flatten())
            bar.update(batch.num_rows)
    return counts


def _token_header(spec: str, tok, wrote: Written) -> TokenHeader:
    layout = wrote.layout or {
        TOKENS_FILE: f"token ids back to back, {wrote.dtype} little-endian (numpy.memmap)",
        INDEX_FILE: "int64 offsets (numpy.load): sequence i is tokens[idx[i]:idx[i + 1]]",
    }
    return TokenHeader(
        tokenizer=spec,
        tokenizer_path=getattr(tok, "name_or_path", None),
        vocab_size=len(tok),
        eos_token_id=tok.eos_token_id,
        dtype=wrote.dtype,
        count=wrote.tokens,
        files=layout,
        documents=wrote.documents,
        split=wrote.split,
        block_size=wrote.block_size,
    )


def _publish(partial: Path, target: Path) -> None:
    """Rename the finished folder into place; a replaced export is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.replaced-{uuid.uuid4().hex[:12]}"
        target.rename(old)
    partial.rename(target)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
