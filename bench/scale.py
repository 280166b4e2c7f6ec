"""The data path at scale: memory and speed of `miniplm prepare` on a corpus of N GB in one JSONL file.

    python bench/scale.py --gb 0.1
    python bench/scale.py --gb 1                 # or --corpus FILE.jsonl to measure your own

Builds (or takes) the corpus, runs `miniplm prepare` on all of it with the demo teacher's tokenizer (SmolLM2),
then the whole pipeline on its first 2% with a tiny random model as teacher (so the figures measure the data
path, not a model: 2 layers, 64 wide, an 8,000-token vocabulary), sampling the memory of the whole process
tree. Prints one line per step and, last, one JSON object (bench/RESULTS.md has recorded figures).
"""

from __future__ import annotations

import sys

sys.path[0] = __file__.rsplit("/bench/", 1)[0]  # the repository root, not bench/ (see bench/score.py)

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

DEMO_TEACHER = "demo:smollm2-135m"


def real_paragraphs() -> list[str]:
    """Real prose every machine has: the language reference, module docstrings, and Debian's copyright texts."""
    from pydoc_data.topics import topics

    from miniplm.experiment.demo import _module_docstrings

    texts = [v for _, v in sorted(topics.items())] + [d["text"] for d in _module_docstrings()]
    texts += [p.read_text(errors="replace") for p in sorted(Path("/usr/share/doc").glob("*/copyright"))[:2000]]
    return [p.strip() for t in texts for p in t.split("\n\n") if len(p.strip()) > 40]


def build_corpus(path: Path, gb: float, seed: int = 0) -> Path:
    """Documents of 2 to 12 real paragraphs in a seeded random order, each with a unique first line."""
    paragraphs = real_paragraphs()
    rng = np.random.default_rng(seed)
    target = int(gb * 1e9)
    written = n = 0
    with open(path, "w") as f:
        while written < target:
            picks = rng.integers(0, len(paragraphs), size=int(rng.integers(2, 13)))
            text = f"Document {n}.\n\n" + "\n\n".join(paragraphs[i] for i in picks)
            line = json.dumps({"text": text}) + "\n"
            f.write(line)
            written += len(line)
            n += 1
    return path


class TreeMemory:
    """Peak resident memory of a process and all its descendants, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.NoSuchProcess):  # a worker that ended meanwhile
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.1)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def run_cli(*args: str) -> tuple[dict, float, int]:
    """`miniplm ARGS --json` in a subprocess: its summary, wall seconds and peak memory of its process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args, "--json"], stdout=subprocess.PIPE, text=True)
    memory = TreeMemory(proc.pid)
    out, _ = proc.communicate()
    peak = memory.stop()
    if proc.returncode != 0:
        raise SystemExit(f"miniplm {' '.join(args)} failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), time.perf_counter() - start, peak


def tokenizer_only_rate(corpus: Path, tokenizer_path: str, sample_bytes: int = 64 << 20) -> float:
    """The bare tokenizer's batch throughput with all cores (its own threads) on the corpus's first texts."""
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    from miniplm.store.models import load_tokenizer

    backend = load_tokenizer(tokenizer_path).backend_tokenizer
    texts, size = [], 0
    with open(corpus) as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            size += len(line)
            if size >= sample_bytes:
                break
    backend.encode_batch(texts[:64], add_special_tokens=False)  # warm-up
    start = time.perf_counter()
    tokens = 0
    for lo in range(0, len(texts), 512):
        tokens += sum(len(e.ids) for e in backend.encode_batch(texts[lo : lo + 512], add_special_tokens=False))
    return tokens / (time.perf_counter() - start)


def head_of(corpus: Path, fraction: float, out: Path) -> Path:
    """The first `fraction` of a JSONL file's bytes, whole lines."""
    limit = corpus.stat().st_size * fraction
    with open(corpus) as src, open(out, "w") as dst:
        size = 0
        for line in src:
            if size >= limit:
                break
            dst.write(line)
            size += len(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=0.1, help="corpus size to build (default 0.1)")
    parser.add_argument("--corpus", type=Path, help="a JSONL file with a 'text' field instead of building one")
    parser.add_argument("--workdir", type=Path, help="where to work (default: a temporary folder)")
    parser.add_argument("--max-len", type=int, default=1024)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="miniplm-scale-")
    root = args.workdir or Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus or build_corpus(root / f"corpus-{args.gb}gb.jsonl", args.gb)
    gb = corpus.stat().st_size / 1e9
    print(f"corpus {corpus}: {gb:.3f} GB", flush=True)

    prepared, prepare_s, prepare_peak = run_cli(
        "prepare", "--corpus", str(corpus), "--teacher", DEMO_TEACHER, "--workdir", str(root / "wd"),
        "--max-len", str(args.max_len),
    )  # fmt: skip
    steps = prepared["step_seconds"]
    from miniplm.store.catalog import open_readonly
    from miniplm.store.workdir import Workdir

    con = open_readonly(Workdir.open(root / "wd"))
    tokens = con.sql("select sum(n_tokens) from instance_index").fetchall()[0][0]
    con.close()
    data_path_s = steps.get("ingest", 0.0) + steps.get("tokenize", 0.0)
    print(
        f"prepare: {prepared['documents_total']:,} documents, {tokens:,} tokens in {prepare_s:.1f} s "
        f"(ingest {steps.get('ingest', 0):.1f} s, tokenize {steps.get('tokenize', 0):.1f} s, "
        f"split {steps.get('split', 0):.1f} s); peak memory {prepare_peak / 2**20:,.0f} MB",
        flush=True,
    )
    from miniplm.store.models import resolve_model

    demo_path = resolve_model(DEMO_TEACHER).path
    bare = tokenizer_only_rate(corpus, demo_path)
    rate = tokens / data_path_s
    print(f"ingest + tokenize {rate:,.0f} tokens/s; the bare tokenizer {bare:,.0f} tokens/s (all cores)", flush=True)

    # the whole pipeline on the first 2%, with a tiny random teacher (and a small vocabulary: with SmolLM2's 49k,
    # its output head alone would dominate the time) so that the figures are the data path's
    from tests.tiny import make_lm, make_tokenizer

    teacher = make_lm(root / "tiny-teacher", make_tokenizer(root / "tiny-tokenizer", vocab_size=8000), hidden=64)
    head = head_of(corpus, 0.02, root / "head.jsonl")
    summary, pipeline_s, pipeline_peak = run_cli(
        "run", "--corpus", str(head), "--teacher", str(teacher), "--workdir", str(root / "wd-head"),
        "--max-len", str(args.max_len), "--student-steps", "20", "--accept-weak-reference",
    )  # fmt: skip
    print(
        f"pipeline on the first 2%: {summary['candidates']:,} candidates, {summary['selected']:,} kept in "
        f"{pipeline_s:.1f} s; peak memory {pipeline_peak / 2**20:,.0f} MB",
        flush=True,
    )
    print(
        json.dumps(
            {
                "gb": round(gb, 3),
                "documents": prepared["documents_total"],
                "tokens": tokens,
                "shards": prepared["shards"],
                "peak_rss_mb": round(max(prepare_peak, pipeline_peak) / 2**20),
                "prepare_peak_rss_mb": round(prepare_peak / 2**20),
                "pipeline_peak_rss_mb": round(pipeline_peak / 2**20),
                "seconds": {
                    "prepare": round(prepare_s, 1),
                    **{k: round(v, 1) for k, v in steps.items()},
                    "pipeline_2pct": round(pipeline_s, 1),
                    **{f"pipeline_2pct_{k}": round(v, 1) for k, v in summary["step_seconds"].items()},
                },
                "ingest_tokenize_tokens_per_s": round(rate),
                "tokenizer_only_tokens_per_s": round(bare),
                "tokenize_efficiency": round(rate / bare, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
