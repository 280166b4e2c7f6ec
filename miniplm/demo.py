"""The embedded demo: a corpus made of prose every Python installation carries, and SmolLM2-135M as teacher.

Sources: the language reference topics in `pydoc_data` (long, technical prose), and the docstrings of
standard-library modules (shorter, uneven). A third small file holds a few duplicated and malformed rows,
so the accounting shows what happens to bad input.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path

from miniplm.config import (
    CorpusConfig,
    InstanceConfig,
    PipelineConfig,
    ReferenceConfig,
    SplitConfig,
    StudentConfig,
    TrainConfig,
)
from miniplm.models import DEMO_TEACHER

SKIP_MODULES = {"antigravity", "this", "idlelib", "turtledemo", "tkinter", "turtle", "pydoc_data"}
MIN_DOCSTRING_CHARS = 200


def _module_docstrings() -> list[dict]:
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(sys.stdlib_module_names):
            if name.startswith("_") or name in SKIP_MODULES:
                continue
            try:
                module = importlib.import_module(name)
            except Exception:  # platform-specific modules
                continue
            doc = module.__doc__
            if doc and len(doc.strip()) >= MIN_DOCSTRING_CHARS:
                rows.append({"id": f"module:{name}", "text": doc})
    return rows


def _write_jsonl(path: Path, rows: list[dict] | list[str]) -> Path:
    body = "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    if not path.exists() or path.read_text() != body:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return path


def write_demo_corpus(directory: Path) -> list[str]:
    from pydoc_data.topics import topics

    topic_rows = [{"id": f"topic:{k}", "text": v} for k, v in sorted(topics.items())]
    module_rows = _module_docstrings()
    messy = [
        json.dumps({"id": "dup:1", "text": topic_rows[0]["text"]}),  # duplicate of a document in another file
        json.dumps({"id": "dup:2", "text": module_rows[0]["text"] + "\n\n"}),  # same text once normalized
        '{"id": "broken", "text": "an unterminated string}',  # invalid JSON
        json.dumps({"id": "no-text", "body": "this row names its text field differently"}),
        json.dumps({"id": "empty", "text": "   "}),
        json.dumps({"id": "ok", "text": "A short but valid document.\nIt has two lines."}),
    ]
    return [
        str(_write_jsonl(directory / "pydoc_topics.jsonl", topic_rows)),
        str(_write_jsonl(directory / "stdlib_docstrings.jsonl", module_rows)),
        str(_write_jsonl(directory / "messy.jsonl", messy)),
    ]


def demo_config(workdir: str | Path) -> PipelineConfig:
    """Sized to finish within about 15 minutes on 2 CPU cores (teacher scoring dominates)."""
    workdir = Path(workdir).expanduser().resolve()
    paths = write_demo_corpus(workdir / "demo-corpus")
    return PipelineConfig(
        workdir=str(workdir),
        corpus=CorpusConfig(paths=paths),
        teacher=DEMO_TEACHER,
        instances=InstanceConfig(max_len=512),
        # A corpus of ~150k tokens: 5% would give the reference too little to learn from.
        split=SplitConfig(reference_fraction=0.15, heldout_fraction=0.08, seed=0),
        # D_ref is ~20k tokens: one pass would be a handful of steps, so the demo's reference makes several passes
        # in small batches, and validation on D_ref stops it at its best.
        reference=ReferenceConfig(
            train=TrainConfig(
                max_steps=None,
                epochs=20,
                batch_size=4,
                learning_rate=3e-3,
                warmup_steps=5,
                eval_interval=10,
                patience=3,
            )
        ),
        student=StudentConfig(
            train=TrainConfig(
                max_steps=150, batch_size=8, block_size=128, learning_rate=3e-3, warmup_steps=15, eval_interval=50
            )
        ),
    )
