"""A student's own tokenizer, fitted on the pool: a byte-level BPE of a few thousand tokens.

MiniPLM's students need not share the teacher's tokenizer (kept instances are decoded and re-tokenized, one to
one). A small student with the teacher's 49k vocabulary spends most of its parameters and compute on the embedding
and the head, and sees each token type a handful of times; a vocabulary of a few thousand tokens fitted on the
pool leaves the parameters to the transformer. It is fitted on the pool's candidates only (never on D_ref, the
held-out documents or a target set), on a seeded sample of at most `MAX_CHARS` characters, and cached under the
work directory by what determines it: the live sources' content keys, the split and the vocabulary size.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from miniplm.store.catalog import connect, load_sql
from miniplm.store.hashing import stable_hash
from miniplm.store.manifest import RunManifest
from miniplm.store.shards import read_json, temporary_name, write_json
from miniplm.store.workdir import Workdir

PREFIX = "train:"
TEACHER = "teacher"  # the teacher's own tokenizer
EOS = "<|endoftext|>"
MAX_CHARS = 200_000_000  # text the BPE is fitted on, at most: its counts stay in memory
MIN_VOCAB = 260  # the 256 bytes, EOS and a few merges
INFO = "miniplm_tokenizer.json"


def trained_vocab_size(spec: str | None) -> int | None:
    """N for a `train:N` spec, None for any other tokenizer spec; a malformed one is an error that says so."""
    if spec is None or not spec.startswith(PREFIX):
        return None
    value = spec.removeprefix(PREFIX)
    if not value.isdigit() or int(value) < MIN_VOCAB:
        raise ValueError(
            f"student tokenizer {spec!r}: expected train:N with N a vocabulary size of at least {MIN_VOCAB}"
        )
    return int(value)


def tokenizer_dir(workdir: Workdir, manifest: RunManifest, vocab_size: int) -> Path:
    key = stable_hash("student-tokenizer-v1", vocab_size, manifest.split_key, sorted(manifest.source_keys))[:16]
    return workdir.models / "student-tokenizer" / key


def _pool_texts(workdir: Workdir, manifest: RunManifest):
    """The pool's documents, a seeded sample of about MAX_CHARS characters, streamed in record batches."""
    con = connect(workdir, manifest)
    total = con.sql(load_sql("pool_characters")).fetchall()[0][0] or 0
    slots = 1_000_000 if total <= MAX_CHARS else max(1, int(1_000_000 * MAX_CHARS / total))
    reader = con.sql(load_sql("tokenizer_sample"), params={"slots": slots}).to_arrow_reader(1024)
    for batch in reader:
        yield from batch.column("text").to_pylist()


def fit_student_tokenizer(workdir: Workdir, manifest: RunManifest, vocab_size: int) -> Path:
    """Fit (or find) the byte-level BPE; returns a directory that `AutoTokenizer.from_pretrained` loads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    final = tokenizer_dir(workdir, manifest, vocab_size)
    if (final / INFO).exists():
        return final
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    counted = {"documents": 0, "characters": 0}

    def texts():
        for text in _pool_texts(workdir, manifest):
            counted["documents"] += 1
            counted["characters"] += len(text)
            yield text

    bpe.train_from_iterator(texts(), trainer)
    if counted["documents"] == 0:
        raise ValueError("the pool holds no documents to fit the student's tokenizer on")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=EOS)
    tmp = temporary_name(final)
    tokenizer.save_pretrained(tmp)
    write_json({"vocab_size": len(tokenizer), "requested": vocab_size, **counted}, tmp / INFO)
    shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(final)
    return final


def resolve_student_tokenizer(workdir: Workdir, manifest: RunManifest, spec: str | None) -> str:
    """The student's tokenizer as a path: fitted on the pool for `train:N`, the teacher's when empty, else as given."""
    n = trained_vocab_size(spec)
    if n is not None:
        return str(fit_student_tokenizer(workdir, manifest, n))
    return manifest.teacher.path if spec in (None, "", TEACHER) else spec


def tokenizer_info(path: str) -> dict:
    info = Path(path) / INFO
    return read_json(info) if info.exists() else {}
