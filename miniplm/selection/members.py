"""A selection's members (the kept instances) as text (Parquet) and as training tokens in the student's tokenizer.

Instances are decoded with the teacher's tokenizer and re-tokenized with the student's, one instance to
one sequence, so a student of another family trains on exactly the kept text.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from miniplm.data.sequences import write_sequences
from miniplm.store.catalog import connect, load_sql
from miniplm.store.manifest import RunManifest
from miniplm.store.models import load_tokenizer, tokenizer_fingerprint
from miniplm.store.shards import read_json, write_json, write_parquet
from miniplm.store.workdir import Workdir

DECODE_BATCH = 512


def decode_instances(teacher_tok, token_lists: list[list[int]]) -> tuple[list[str], list[bool]]:
    """Each instance's text, and whether it ends its document (its last token is the EOS the instance cutter
    appended there; the text leaves it out, so another tokenizer can end the sequence with its own)."""
    eos = teacher_tok.eos_token_id
    ends_doc = [bool(ids) and ids[-1] == eos for ids in token_lists]
    texts: list[str] = []
    for lo in range(0, len(token_lists), DECODE_BATCH):
        chunk = [
            ids[:-1] if end else ids
            for ids, end in zip(token_lists[lo : lo + DECODE_BATCH], ends_doc[lo : lo + DECODE_BATCH], strict=True)
        ]
        texts.extend(_decode_batch(teacher_tok, chunk))
    return texts, ends_doc


def _decode_batch(tok, chunk: list[list[int]]) -> list[str]:
    # a fast tokenizer's own Rust batch: transformers' batch_decode first walks every id in Python (type checks),
    # three quarters of an export's time; with no clean-up of spaces the two give the same text
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        return backend.decode_batch(chunk, skip_special_tokens=False)
    return tok.batch_decode(chunk, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def encode_instances(tok, texts: list[str], ends_doc: list[bool]) -> list[list[int]]:
    """The texts in another tokenizer, one instance to one sequence, with its EOS where the document ends."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:  # the Rust batch directly: a third of the time, the same ids
        enc = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    else:
        enc = tok(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [list(ids) + ([tok.eos_token_id] if end else []) for ids, end in zip(enc, ends_doc, strict=True)]


def export_members(
    workdir: Workdir, manifest: RunManifest, members_path: Path, out_dir: Path, student_tokenizer: str
) -> dict:
    """Write out_dir/text.parquet and out_dir/tokens-<fp>.bin for the instances listed in members_path."""
    teacher_tok = load_tokenizer(manifest.teacher.path)
    student_tok = load_tokenizer(student_tokenizer)
    tokens_path = out_dir / f"tokens-{tokenizer_fingerprint(student_tokenizer)[:12]}.bin"
    summary_path = tokens_path.with_suffix(".json")
    if summary_path.exists() and tokens_path.exists():
        return read_json(summary_path)
    con = connect(workdir, manifest)
    table = con.sql(load_sql("export_members"), params={"members_path": str(members_path)}).to_arrow_table()
    token_lists = table.column("token_ids").to_pylist()
    texts, ends_doc = decode_instances(teacher_tok, token_lists)
    text_table = table.drop_columns(["token_ids"]).append_column("text", pa.array(texts, pa.string()))
    text_table = text_table.append_column("ends_document", pa.array(ends_doc, pa.bool_()))
    write_parquet(text_table, out_dir / "text.parquet")

    def student_sequences():
        for lo in range(0, len(texts), DECODE_BATCH):
            yield from encode_instances(student_tok, texts[lo : lo + DECODE_BATCH], ends_doc[lo : lo + DECODE_BATCH])

    n_tokens = write_sequences(tokens_path, student_sequences())
    summary = {
        "instances": len(texts),
        "student_tokens": n_tokens,
        "text_path": str(out_dir / "text.parquet"),
        "tokens_path": str(tokens_path),
        "teacher_tokens": int(sum(len(t) for t in token_lists)),
    }
    write_json(summary, summary_path)
    return summary
