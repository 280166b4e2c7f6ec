"""Students' loss per document, on sets they never trained on: a target set the user passes, and the held-out
documents of the pool (reported per source file as well).

Each document is evaluated on its own, in the student's tokenizer with EOS appended, in consecutive windows of
`block_size` predicted tokens (a window sees only its own document): its loss is the sum of the negative
log-likelihoods of its tokens after the first. Per-document sums are what the report's bootstrap resamples.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel

from miniplm.data import corpus
from miniplm.data.sequences import IGNORE, read_offsets, read_tokens, write_sequences
from miniplm.store.hashing import doc_id, normalize_text, stable_hash
from miniplm.store.shards import read_json, write_json, write_parquet
from miniplm.training.losses import chunked_sum, head_logits, predicted
from miniplm.training.train_summary import Evaluation

EVAL_BATCH_TOKENS = 8192


def read_target_documents(paths: list[str], text_column: str) -> tuple[list[dict], dict]:
    """Distinct documents of the target files, and how many rows were set aside (the caller also sets aside those in
    the corpus: a target document among the training data would measure memory, not generalization)."""
    docs, seen = [], set()
    counts = {"rows_read": 0, "unreadable": 0, "duplicates": 0}
    for spec in paths:
        for row in corpus.read_rows(spec, text_column):
            counts["rows_read"] += 1
            if row.problem is not None or not isinstance(row.text, str) or not row.text.strip():
                counts["unreadable"] += 1
                continue
            text = normalize_text(row.text)
            key = doc_id(text)
            if key in seen:
                counts["duplicates"] += 1
            else:
                seen.add(key)
                docs.append({"doc_id": key, "source": row.file, "text": text})
    return docs, counts


def capped(docs: list[dict], limit: int, salt: str) -> list[dict]:
    """At most `limit` documents: a seeded choice that depends only on the ids, in id order."""
    if len(docs) > limit:
        docs = sorted(docs, key=lambda d: stable_hash(salt, d["doc_id"]))[:limit]
    return sorted(docs, key=lambda d: d["doc_id"])


class EvalSet(BaseModel):
    """The documents students are judged on, tokenized once for them (`eval_set.json` beside the files)."""

    path: str  # the folder: tokens.bin (+ offsets), documents.parquet, curve.bin
    tokens_path: str
    curve_path: str  # the main set's documents as one stream, which training evaluates on as it goes
    curve_set: str  # "target" where there is one, else "heldout"
    bytes: dict[str, int]
    documents: dict[str, int]
    tokens: dict[str, int]
    target_set_aside: dict[str, int] = {}  # the target file's rows: read, unreadable, duplicates, in the corpus


def write_eval_set(out_dir: Path, sets: dict[str, list[dict]], tokenizer_path: str) -> EvalSet:
    """Tokenize the evaluation documents once: `tokens.bin` (+ offsets), one sequence per document,
    `documents.parquet` (set, doc_id, source, n_tokens, n_bytes), and `curve.bin`, the main set's documents (the
    target's, else the held-out ones) as one stream that training evaluates on as it goes. Returns the summary."""
    from miniplm.store.models import load_tokenizer

    summary_path = out_dir / "eval_set.json"
    if summary_path.exists() and (out_dir / "tokens.bin").exists():
        return EvalSet.model_validate(read_json(summary_path))
    tok = load_tokenizer(tokenizer_path)
    rows = [{"set": name, **d} for name, docs in sets.items() for d in docs]
    ids = tok([r["text"] for r in rows], add_special_tokens=False, verbose=False)["input_ids"] if rows else []
    sequences = [list(seq) + [tok.eos_token_id] for seq in ids]
    table = pa.table(
        {
            "set": [r["set"] for r in rows],
            "doc_id": [r["doc_id"] for r in rows],
            "source": [r["source"] for r in rows],
            "n_tokens": [len(s) for s in sequences],
            "n_bytes": [len(r["text"].encode("utf-8")) for r in rows],
        }
    )
    write_parquet(table, out_dir / "documents.parquet")
    main = "target" if sets.get("target") else "heldout"
    write_sequences(out_dir / "curve.bin", [s for s, r in zip(sequences, rows, strict=True) if r["set"] == main])
    write_sequences(out_dir / "tokens.bin", sequences)
    summary = EvalSet(
        path=str(out_dir),
        tokens_path=str(out_dir / "tokens.bin"),
        curve_path=str(out_dir / "curve.bin"),
        curve_set=main,
        bytes={name: int(sum(len(d["text"].encode("utf-8")) for d in docs)) for name, docs in sets.items()},
        documents={name: len(docs) for name, docs in sets.items()},
        tokens={
            name: int(sum(len(s) for s, r in zip(sequences, rows, strict=True) if r["set"] == name)) for name in sets
        },  # fmt: skip
    )
    write_json(summary.model_dump(), summary_path)
    return summary


def windows(lengths: np.ndarray, block_size: int) -> list[tuple[int, int, int]]:
    """(document, start, end) windows of at most block_size + 1 tokens; consecutive windows share one token, so
    every token after a document's first is predicted exactly once."""
    out = []
    for d, n in enumerate(lengths.tolist()):
        for start in range(0, max(n - 1, 0), block_size):
            out.append((d, start, min(start + block_size + 1, n)))
    return out


@torch.inference_mode()
def document_losses(model_dir: Path, eval_dir: Path, block_size: int, device: torch.device) -> pa.Table:
    """Sum of per-token negative log-likelihood and number of predicted tokens per document of the eval set."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    docs = pq.read_table(eval_dir / "documents.parquet")
    tokens_path = eval_dir / "tokens.bin"
    tokens, offsets = read_tokens(tokens_path), read_offsets(tokens_path)
    lengths = np.diff(offsets)
    sums = np.zeros(len(lengths), dtype=np.float64)
    counts = np.maximum(lengths - 1, 0)
    spans = sorted(windows(lengths, block_size), key=lambda w: w[2] - w[1], reverse=True)
    lo = 0
    while lo < len(spans):
        width = spans[lo][2] - spans[lo][1]
        n = max(1, EVAL_BATCH_TOKENS // width)
        batch = spans[lo : lo + n]
        lo += n
        x = np.zeros((len(batch), width), dtype=np.int64)
        labels = np.full((len(batch), width - 1), IGNORE, dtype=np.int64)
        for i, (d, start, end) in enumerate(batch):
            piece = tokens[offsets[d] + start : offsets[d] + end]
            x[i, : len(piece)] = piece
            labels[i, : len(piece) - 1] = piece[1:]
        x_t, labels_t = torch.from_numpy(x).to(device), torch.from_numpy(labels).to(device)
        nll = token_nll(model, x_t, labels_t)  # (real positions,), row-major
        rows = np.repeat(np.arange(len(batch)), (labels != IGNORE).sum(axis=1))
        per_row = np.bincount(rows, weights=nll.cpu().numpy().astype(np.float64), minlength=len(batch))
        np.add.at(sums, [d for d, _, _ in batch], per_row)
    return docs.append_column("sum_nll", pa.array(sums)).append_column("n_predicted", pa.array(counts))


def token_nll(model, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of every labelled position, in row-major order, float32."""
    hidden = model.get_decoder()(input_ids=x[:, :-1]).last_hidden_state
    h, targets = predicted(hidden, x, labels)
    out = []

    def chunk_nll(h_chunk: torch.Tensor, t_chunk: torch.Tensor) -> torch.Tensor:
        out.append(torch.nn.functional.cross_entropy(head_logits(model, h_chunk), t_chunk, reduction="none"))
        return out[-1].sum()

    chunked_sum(chunk_nll, h.shape[0], model.get_output_embeddings().weight.shape[0], h, targets)
    return torch.cat(out) if out else torch.zeros(0)


def evaluate_student(model_dir: Path, eval_dir: Path, block_size: int, device_spec: str, out: Path) -> Evaluation:
    """Write `out` (per-document losses) unless it exists; returns its path and the seconds it took."""
    from miniplm.scoring.devices import pick_device

    if out.exists():
        return Evaluation(path=str(out), seconds=read_json(out.with_suffix(".json"))["seconds"])
    start = time.perf_counter()
    table = document_losses(model_dir, eval_dir, block_size, pick_device(device_spec))
    seconds = round(time.perf_counter() - start, 2)
    write_json({"seconds": seconds}, out.with_suffix(".json"))
    write_parquet(table, out)  # last: marks completion
    return Evaluation(path=str(out), seconds=seconds)
