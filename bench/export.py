"""Export speed: `miniplm export` of a large selection in every format (the trainers' megatron, nanogpt, litdata too),
against a plain DuckDB COPY of the same rows.

    python bench/export.py --instances 200000 --tokens 256

Builds a work directory whose instances are windows of real text (this repository's docs and code) in the demo
teacher's tokenizer (SmolLM2's 49,152 tokens), scores them at random and keeps half with the product's
selection; then times `export_selection` per format and DuckDB's `COPY (the same query) TO parquet`, which neither
decodes nor re-tokenizes. Prints instances/s, MB/s of output and peak memory per format, each in a fresh process;
last line: one JSON object. Memory should not grow with --instances (the export streams; compare two sizes).
"""

from __future__ import annotations

import sys

sys.path[0] = __file__.rsplit("/bench/", 1)[0]  # the repository root, as the other benches

import argparse
import json
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from miniplm import pipeline_steps
from miniplm.config import SelectConfig, SplitConfig
from miniplm.data.splits import split_key
from miniplm.selection.export import export_selection
from miniplm.selection.select import run_selection
from miniplm.store import schemas
from miniplm.store.catalog import load_sql, open_readonly
from miniplm.store.manifest import ModelRef, RunManifest, SourceRef
from miniplm.store.models import load_tokenizer, resolve_model
from miniplm.store.shards import write_parquet
from miniplm.store.workdir import Workdir

ROOT = Path(__file__).resolve().parents[1]
SPEC, SOURCE, VARIANT = "bench-spec", "bench-source", "float32-bench"
WINDOWS = 4096  # distinct real-text windows the instances cycle through
ROWS = 100_000  # instances per shard written here


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_token_windows(tokenizer_path: str, length: int) -> list[list[int]]:
    """WINDOWS windows of `length` tokens from this repository's markdown and Python, in the teacher's tokenizer."""
    tok = load_tokenizer(tokenizer_path)
    text = "\n\n".join(p.read_text() for pattern in ("**/*.md", "**/*.py") for p in sorted(ROOT.glob(pattern))
                       if ".venv" not in p.parts)  # fmt: skip
    stream = tok(text, add_special_tokens=False)["input_ids"]
    starts = np.random.default_rng(0).integers(0, len(stream) - length, WINDOWS)
    return [stream[s : s + length] for s in starts.tolist()]


def build_workdir(root: Path, teacher_path: str, n: int, length: int) -> tuple[Workdir, RunManifest]:
    wd = Workdir.create(root)
    windows = real_token_windows(teacher_path, length)
    rng = np.random.default_rng(1)
    split = SplitConfig(reference_fraction=0.0, heldout_fraction=0.0)
    for part, lo in enumerate(range(0, n, ROWS)):
        ids = [f"{i:032x}" for i in range(lo, min(lo + ROWS, n))]
        docs = [f"d{i}" for i in ids]
        k = len(ids)
        tokens = [windows[i % WINDOWS] for i in range(lo, lo + k)]
        write_parquet(pa.table({"doc_id": docs, "text": ["-"] * k, "source": [f"s{i % 3}" for i in range(k)],
                                "row": list(range(lo, lo + k)), "n_chars": [1] * k, "truncated": [False] * k},
                               schema=schemas.DOCUMENT), wd.documents(SOURCE, part))  # fmt: skip
        write_parquet(pa.table({"instance_id": ids, "doc_id": docs, "chunk_index": [0] * k,
                                "n_tokens": [length] * k, "token_ids": tokens}, schema=schemas.INSTANCE),
                      wd.instances(SPEC, SOURCE, part))  # fmt: skip
        write_parquet(pa.table({"doc_id": docs, "split": ["pool"] * k}, schema=schemas.SPLIT),
                      wd.splits(split_key(split), SOURCE, part))  # fmt: skip
        for fp in ("T", "R"):
            logp = rng.normal(-3, 1, k)
            write_parquet(pa.table({"instance_id": ids, "n_predicted": [length - 1] * k, "sum_logp": logp * length,
                                    "mean_logp": logp}, schema=schemas.SCORE),
                          wd.partition_scores_dir(fp, VARIANT, SOURCE, part) / "bench.parquet")  # fmt: skip
    manifest = RunManifest(
        sources=[SourceRef(spec="bench", source_key=SOURCE, parts=-(-n // ROWS))],
        instance_spec=SPEC,
        split=split,
        split_key=split_key(split),
        teacher=ModelRef(spec="demo:smollm2-135m", path=teacher_path, fingerprint="T"),
        reference=ModelRef(spec="bench-reference", path=teacher_path, fingerprint="R"),
        score_variant=VARIANT,
    )
    record = run_selection(wd, manifest, SelectConfig(alpha=0.5))
    return wd, pipeline_steps.make_manifest(
        str(wd.root), manifest.model_copy(update={"selection_id": record["selection_id"]})
    )


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def duckdb_copy(root: Path, out: Path) -> tuple[float, float]:
    """The same rows (tokens, not text) written by DuckDB alone: what streaming through Python costs on top."""
    wd = Workdir.open(root)
    con = open_readonly(wd)
    selection_id = json.loads(wd.manifest.read_text())["selection_id"]
    params = {"selection_id": selection_id, "shuffle": False, "seed": 0}
    start = time.perf_counter()
    con.sql(load_sql("kept_instances"), params=params).write_parquet(str(out), compression="zstd")
    seconds = time.perf_counter() - start
    con.close()
    return seconds, peak_rss_mb()


def one_export(root: Path, out: Path, fmt: str, tokenizer: str | None) -> tuple[float, float, int]:
    start = time.perf_counter()
    header = export_selection(root, out, fmt, tokenizer=tokenizer)
    return time.perf_counter() - start, peak_rss_mb(), header.instances


def in_child(function, *args):
    """Run in a fresh process, so each figure's peak memory is its own (a process's peak never goes down)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200_000)
    parser.add_argument("--tokens", type=int, default=256, help="teacher tokens per instance")
    parser.add_argument("--formats", default="parquet,jsonl,hf,tokens,tokens-retokenized,megatron,nanogpt,litdata")
    args = parser.parse_args()
    teacher = resolve_model("demo:smollm2-135m").path
    tmp = Path(tempfile.mkdtemp(prefix="miniplm-bench-export-"))
    try:
        start = time.perf_counter()
        wd, manifest = build_workdir(tmp / "wd", teacher, args.instances, args.tokens)
        kept = open_readonly(wd).sql("select count(*) from selected").fetchall()[0][0]
        print(f"work directory: {args.instances:,} instances of {args.tokens} tokens, {kept:,} kept "
              f"({time.perf_counter() - start:.0f} s to build)", flush=True)  # fmt: skip
        results = {}
        seconds, peak = in_child(duckdb_copy, wd.root, tmp / "copy.parquet")
        mb = (tmp / "copy.parquet").stat().st_size / 2**20
        results["duckdb_copy"] = {"seconds": round(seconds, 2), "instances_per_s": round(kept / seconds),
                                  "mb": round(mb, 1),
                                  "mb_per_s": round(mb / seconds, 1), "peak_rss_mb": round(peak)}  # fmt: skip
        print(f"{'duckdb COPY':>18}: {kept / seconds:>9,.0f} instances/s {mb / seconds:7.1f} MB/s ({mb:.0f} MB), "
              f"peak RSS {peak:,.0f} MB", flush=True)  # fmt: skip
        for name in args.formats.split(","):
            fmt, tokenizer = ("tokens", teacher) if name == "tokens-retokenized" else (name, None)
            out = tmp / name
            seconds, peak, written = in_child(one_export, wd.root, out, fmt, tokenizer)
            mb = folder_mb(out)
            assert written == kept
            results[name] = {"seconds": round(seconds, 2), "instances_per_s": round(kept / seconds), "mb": round(mb, 1),
                             "mb_per_s": round(mb / seconds, 1), "peak_rss_mb": round(peak)}  # fmt: skip
            print(f"{name:>18}: {kept / seconds:>9,.0f} instances/s {mb / seconds:7.1f} MB/s ({mb:.0f} MB), "
                  f"peak RSS {peak:,.0f} MB", flush=True)  # fmt: skip
            shutil.rmtree(out)
        print(json.dumps({"instances": args.instances, "kept": kept, "tokens_per_instance": args.tokens,
                          "results": results}))  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
