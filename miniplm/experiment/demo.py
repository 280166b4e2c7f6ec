"""The embedded demo and the smoke preset: prose every Python installation carries, SmolLM2-135M as teacher.

Sources: the language reference topics in `pydoc_data` (long, technical prose), and the docstrings of
standard-library modules (shorter, uneven). A third small file holds a few duplicated and malformed rows,
so the accounting shows what happens to bad input. A fifth of the topics and of the modules, set apart by a hash of
their names, are the target set, cut into sections: never in the pool in any form, they judge the students.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path

from miniplm.config import (
    ALL_ARMS,
    CorpusConfig,
    ExperimentConfig,
    InstanceConfig,
    PipelineConfig,
    ReferenceConfig,
    SplitConfig,
    StudentConfig,
    TrainConfig,
    default_student_arch,
    small_llama,
)
from miniplm.store.hashing import unit_interval
from miniplm.store.models import DEMO_TEACHER

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


TARGET_SHARE = 0.2  # of the topics and of the modules: the demo's target set, never in the pool
SECTION_CHARS = 600  # a target section: paragraphs up to at least this many characters
DEMO_TOPIC_CHARS = 8000  # the demo's pool takes the topics up to this long (teacher scoring is its cost)


def _is_target(name: str) -> bool:
    return unit_interval(0, "demo-target", name) < TARGET_SHARE


def sections(row: dict) -> list[dict]:
    """A document cut at blank lines into sections of at least SECTION_CHARS (a short tail joins none)."""
    out, current = [], ""
    for paragraph in row["text"].split("\n\n"):
        current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= SECTION_CHARS:
            out.append(current.strip())
            current = ""
    if len(current.strip()) >= SECTION_CHARS // 3:
        out.append(current.strip())
    return [{"id": f"{row['id']}#{i}", "text": t} for i, t in enumerate(out)]


def write_demo_corpus(directory: Path, topic_chars: int | None = None) -> tuple[list[str], str]:
    """The pool's files (topics, docstrings, a messy file) and the target file: the sections of topics and modules
    set apart by a hash of their names, high-quality documents of sources the pool also holds. `topic_chars` keeps
    only the shorter topics in the pool."""
    from pydoc_data.topics import topics

    topic_rows = [{"id": f"topic:{k}", "text": v} for k, v in sorted(topics.items())]
    module_rows = [r for r in _module_docstrings() if not _is_target(r["id"])]
    target_rows = [s for r in topic_rows + _module_docstrings() if _is_target(r["id"]) for s in sections(r)]
    pool_topics = [
        r for r in topic_rows if not _is_target(r["id"]) and (topic_chars is None or len(r["text"]) <= topic_chars)
    ]
    messy = [
        json.dumps({"id": "dup:1", "text": pool_topics[0]["text"]}),  # duplicate of a document in another file
        json.dumps({"id": "dup:2", "text": module_rows[0]["text"] + "\n\n"}),  # same text once normalized
        '{"id": "broken", "text": "an unterminated string}',  # invalid JSON
        json.dumps({"id": "no-text", "body": "this row names its text field differently"}),
        json.dumps({"id": "empty", "text": "   "}),
        json.dumps({"id": "ok", "text": "A short but valid document.\nIt has two lines."}),
    ]
    pool = [
        str(_write_jsonl(directory / "pydoc_topics.jsonl", pool_topics)),
        str(_write_jsonl(directory / "stdlib_docstrings.jsonl", module_rows)),
        str(_write_jsonl(directory / "messy.jsonl", messy)),
    ]
    return pool, str(_write_jsonl(directory / "target_sections.jsonl", target_rows))


def demo_config(workdir: str | Path) -> PipelineConfig:
    """Sized to finish within about 15 minutes on 2 CPU cores (teacher scoring dominates)."""
    return demo_experiment(workdir)[0]


def demo_experiment(workdir: str | Path) -> tuple[PipelineConfig, ExperimentConfig]:
    """The demo: a small honest instance of the paper's comparison. The student (its own tokenizer, fitted on the
    pool) trains on Difference Sampling's half and on a uniform sample of the same tokens, two seeds each, with a
    learning rate tuned on the uniform arm, judged on sections of topics and modules the pool never held."""
    workdir = Path(workdir).expanduser().resolve()
    paths, target = write_demo_corpus(workdir / "demo-corpus", topic_chars=DEMO_TOPIC_CHARS)
    pipeline = PipelineConfig(
        workdir=str(workdir),
        corpus=CorpusConfig(paths=paths),
        teacher=DEMO_TEACHER,
        instances=InstanceConfig(max_len=512),
        # D_ref's share is left to the run: a corpus this small gets the most (20%), a few tens of thousands of tokens
        split=SplitConfig(heldout_fraction=0.08, seed=0),
        # several passes over so small a D_ref, in small batches; its validation slice stops each size at its best
        reference=ReferenceConfig(
            train=TrainConfig(
                max_steps=None,
                epochs=6,
                batch_size=4,
                learning_rate=3e-3,
                warmup_steps=5,
                eval_interval=10,
                patience=3,
            )
        ),
        student=StudentConfig(
            tokenizer="train:1024",
            arch=default_student_arch(),
            train=TrainConfig(
                max_steps=None,
                tokens_per_parameter=3,  # enough for both arms' students to leave the unigram regime on so small a pool
                batch_size=16,
                block_size=256,
                learning_rate=3e-3,
                warmup_steps=10,
                eval_batches=8,
            ),
        ),
    )
    experiment = ExperimentConfig(arms=["miniplm", "uniform"], seeds=2, target_paths=[target])
    return pipeline, experiment


def smoke_experiment(workdir: str | Path) -> tuple[PipelineConfig, ExperimentConfig]:
    """Every arm and check of the experiment, tiny: the demo's pipeline (its corpus, reference and scores, so in the
    demo's work directory it scores nothing again), a small student in the teacher's tokenizer (so that Vanilla KD,
    which compares the two distributions token by token, runs too), a few steps, two seeds."""
    pipeline, demo = demo_experiment(workdir)
    student = StudentConfig(
        tokenizer="teacher",
        arch=small_llama(2, 64),
        train=TrainConfig(
            max_steps=12, batch_size=4, block_size=128, learning_rate=3e-3, warmup_steps=2, eval_batches=2
        ),
    )
    experiment = ExperimentConfig(
        arms=list(ALL_ARMS),
        seeds=2,
        control_sources=[Path(pipeline.corpus.paths[0]).name],  # the topics: the target's own kind
        learning_rates=[1e-3, 1e-2],
        target_paths=demo.target_paths,
        bootstrap_samples=1000,
        max_eval_documents=40,
    )
    return pipeline.model_copy(update={"student": student}), experiment


PRESETS = {"demo": demo_experiment, "smoke": smoke_experiment}
