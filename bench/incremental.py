"""Incremental re-scoring: a full run, then 10% more documents, then nothing new (same tiny models).

    python bench/incremental.py [--documents 3000]

Students are off: this measures what re-scoring costs, not retraining. The Prefect server is started before
the first timed run so all three pay the same orchestration overhead. Last line: one JSON object.
"""

from __future__ import annotations

import sys

# Run as a script, Python puts bench/ first on the path, where select.py would shadow the standard library's
# `select`; the repository root goes there instead.
sys.path[0] = __file__.rsplit("/bench/", 1)[0]

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def paragraphs(n: int) -> list[str]:
    from pydoc_data.topics import topics

    from miniplm.experiment.demo import _module_docstrings

    texts = [v for _, v in sorted(topics.items())] + [d["text"] for d in _module_docstrings()]
    pieces = [p.strip() for t in texts for p in t.split("\n\n") if len(p.strip()) > 80]
    out, i = [], 0
    while len(out) < n:  # more than the stdlib holds: number the repeats so each is its own document
        out.append(pieces[i % len(pieces)] + ("" if i < len(pieces) else f"\n(variant {i // len(pieces)})"))
        i += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--hidden", type=int, default=512, help="teacher width (the reference is trained)")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import miniplm_pipeline
    from miniplm.config import (
        CorpusConfig,
        InstanceConfig,
        PipelineConfig,
        ReferenceConfig,
        StudentConfig,
        TrainConfig,
    )
    from tests.tiny import make_lm, make_tokenizer, write_jsonl

    tmp = Path(tempfile.mkdtemp(prefix="miniplm-bench-incremental-"))
    tok = make_tokenizer(tmp / "tok", vocab_size=4000)
    teacher = make_lm(tmp / "teacher", tok, hidden=args.hidden, layers=8)
    docs = paragraphs(args.documents + args.documents // 10)
    first = write_jsonl(tmp / "corpus" / "part-000.jsonl", docs[: args.documents])
    added = write_jsonl(tmp / "corpus" / "part-001.jsonl", docs[args.documents :])

    def config(paths):
        return PipelineConfig(
            workdir=str(tmp / "wd"),
            corpus=CorpusConfig(paths=[str(p) for p in paths]),
            teacher=str(teacher),
            instances=InstanceConfig(max_len=256),
            reference=ReferenceConfig(train=TrainConfig(max_steps=50, batch_size=8), accept_weak=True),
            student=StudentConfig(enabled=False),
        )

    timings, summaries = {}, {}
    with prefect_test_harness(server_startup_timeout=120):
        for label, paths in (("full", [first]), ("incremental", [first, added]), ("noop", [first, added])):
            start = time.perf_counter()
            summaries[label] = miniplm_pipeline(config(paths))
            timings[label] = time.perf_counter() - start
            s = summaries[label]
            print(
                f"{label}: {timings[label]:.1f} s, {s.documents_new} new documents, scored "
                f"{s.instances_scored_teacher} teacher / {s.instances_scored_reference} reference instances, "
                f"cache hits: {len(s.steps_cached)}, steps run: {', '.join(s.steps_run) or 'none'}",
                flush=True,
            )
    print(
        json.dumps(
            {
                "documents": args.documents,
                "added": len(docs) - args.documents,
                "full_s": round(timings["full"], 2),
                "incremental_s": round(timings["incremental"], 2),
                "noop_s": round(timings["noop"], 2),
                "incremental_ratio": round(timings["incremental"] / timings["full"], 3),
                "noop_ratio": round(timings["noop"] / timings["full"], 3),
                "instances_scored_incremental": summaries["incremental"].instances_scored_teacher,
                "instances_total": summaries["noop"].instances_total,
            }
        )
    )


if __name__ == "__main__":
    main()
