"""A controlled corpus whose right selection is known by construction, from real text.

    apt-get install python3.11-doc linux-doc-6.1
    python bench/controlled_corpus.py OUT_DIR [--scale 1.0] [--text debian|stdlib]

Writes one JSONL file per kind into OUT_DIR/pool/ and the target set into OUT_DIR/target.jsonl:

  clean_prose      the Python documentation's sections: edited prose (valuable)
  technical        the Linux kernel's documentation sections: dense technical prose (hard but clean: valuable)
  code             the standard library's Python source: code (hard but clean: valuable)
  boilerplate      Debian's copyright files: licence texts repeated across hundreds of packages (easy and common:
                   worth little after the first few)
  degraded_copies  copies of clean_prose documents degraded by machine (characters swapped, words shuffled, spaces
                   lost: harmful)
  noise            random characters in words and lines (harmful)

With `--text stdlib` (any machine with Python, for the tests) the valuable kinds come from what Python itself carries:
the language reference's topics (clean prose), the standard library's module docstrings (technical) and its source
(code); boilerplate stays Debian's copyright files where there are enough of them, else copies of Python's licence
with the names and years changed.

A selection that knows quality keeps the valuable kinds, removes nearly all the noise and degraded copies, and keeps
the boilerplate below its share of the pool. The target set is held-out documents of the three valuable kinds
(files set apart by a hash of their path, never in the pool in any form). Deterministic: the same packages give the
same files.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import sysconfig
from pathlib import Path

sys.path[0] = __file__.rsplit("/bench/", 1)[0]  # the repository root (bench/select.py is not the stdlib's)

from bench.debian_corpus import (
    KERNEL_DOCS,
    PY_DOCS,
    degrade,
    digest,
    python_code,
    read_text,
    sections,
    take,
)

COPYRIGHTS = Path("/usr/share/doc")
# characters per kind at scale 1
BUDGET = {
    "clean_prose": 900_000,
    "technical": 450_000,
    "code": 450_000,
    "boilerplate": 500_000,
    "degraded_copies": 400_000,
    "noise": 150_000,
}
TARGET_BUDGET = {"clean_prose": 250_000, "technical": 120_000, "code": 120_000}
TARGET_SHARE = 1 / 6
MAX_BOILERPLATE_CHARS = 8_000
MIN_DOCSTRING_CHARS = 300


def held_out(key: str) -> bool:
    return digest("controlled-target", key) < TARGET_SHARE


def split_by_file(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Documents of held-out files (the part of the id before '#' or '@') apart from the rest."""
    pool, target = [], []
    for d in docs:
        (target if held_out(d["id"].split("#")[0].split("@")[0]) else pool).append(d)
    return pool, target


def clean_prose() -> list[dict]:
    docs = []
    for path in sorted((PY_DOCS / "_sources").rglob("*.rst.txt")):
        rel = str(path.relative_to(PY_DOCS / "_sources"))
        docs += [{"id": f"{rel}#{i}", "text": t} for i, t in enumerate(sections(read_text(path)))]
    return docs


def technical() -> list[dict]:
    docs = []
    for path in sorted(KERNEL_DOCS.rglob("*.rst*")):
        rel = str(path.relative_to(KERNEL_DOCS))
        docs += [{"id": f"{rel}#{i}", "text": t} for i, t in enumerate(sections(read_text(path)))]
    return docs


def boilerplate(rng: random.Random) -> list[dict]:
    docs = []
    for path in sorted(COPYRIGHTS.glob("*/copyright")):
        text = path.read_text("utf-8", "replace").strip()
        if len(text) >= 300:
            docs.append({"id": f"copyright:{path.parent.name}", "text": text[:MAX_BOILERPLATE_CHARS]})
    if len(docs) >= 40:
        return docs
    licence = (Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt").read_text("utf-8", "replace")[:4000]
    names = ["Python Software Foundation", "the Example Project", "Acme Corporation", "the Authors", "Jane Doe"]
    return [
        {"id": f"licence:{i}", "text": f"Copyright (c) {rng.randint(1990, 2026)} {rng.choice(names)}.\n\n{licence}"}
        for i in range(200)
    ]


def stdlib_prose() -> list[dict]:
    from pydoc_data.topics import topics

    docs = []
    for name, text in sorted(topics.items()):
        docs += [{"id": f"topic:{name}#{i}", "text": t} for i, t in enumerate(sections(text))]
    return docs


def stdlib_docstrings() -> list[dict]:
    import importlib
    import warnings

    docs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(sys.stdlib_module_names):
            if name.startswith("_") or name in {"antigravity", "this", "idlelib", "turtledemo", "tkinter", "turtle"}:
                continue
            try:
                doc = importlib.import_module(name).__doc__
            except Exception:  # platform-specific modules
                continue
            if doc and len(doc) >= MIN_DOCSTRING_CHARS:
                docs.append({"id": f"module:{name}", "text": doc.strip()})
    return docs


def stdlib_code() -> list[dict]:
    import bench.debian_corpus as debian

    debian.STDLIB = Path(sysconfig.get_paths()["stdlib"])  # this interpreter's own library, wherever it lives
    return debian.python_code()


def noise(lengths: list[int], rng: random.Random) -> list[dict]:
    """Random characters shaped like text: words of 1 to 12 characters, lines of 5 to 15 words."""
    alphabet = string.ascii_letters + string.digits + string.punctuation
    docs = []
    for i, n in enumerate(lengths):
        out, size = [], 0
        while size < n:
            line = " ".join("".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(rng.randint(5, 15)))
            out.append(line)
            size += len(line) + 1
        docs.append({"id": f"noise:{i}", "text": "\n".join(out)[:n]})
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every kind's character budget")
    parser.add_argument(
        "--text", choices=("debian", "stdlib"), default="debian", help="where the valuable kinds come from"
    )
    args = parser.parse_args()
    budget = {k: int(v * args.scale) for k, v in BUDGET.items()}
    rng = random.Random(0)
    if args.text == "debian":
        valuable = {"clean_prose": clean_prose(), "technical": technical(), "code": python_code()}
    else:
        valuable = {"clean_prose": stdlib_prose(), "technical": stdlib_docstrings(), "code": stdlib_code()}
    pool, target = {}, []
    for kind, docs in valuable.items():
        kept, held = split_by_file(docs)
        pool[kind] = take(kept, budget[kind], kind)
        target += take(held, int(TARGET_BUDGET[kind] * args.scale), f"target:{kind}")
    pool["boilerplate"] = take(boilerplate(rng), budget["boilerplate"], "boilerplate")
    # degraded copies of documents the pool holds clean: the same prose, made worse
    originals = take(pool["clean_prose"], budget["degraded_copies"], "degraded")
    pool["degraded_copies"] = [{"id": f"degraded:{d['id']}", "text": degrade(d["text"], rng)} for d in originals]
    lengths = [len(d["text"]) for d in take(pool["clean_prose"], budget["noise"], "noise")]
    pool["noise"] = noise(lengths, rng)
    (args.out / "pool").mkdir(parents=True, exist_ok=True)
    for kind, docs in pool.items():
        with open(args.out / "pool" / f"{kind}.jsonl", "w") as f:
            f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
        print(f"{kind:16s} {len(docs):6,d} documents {sum(len(d['text']) for d in docs):11,d} characters")
    with open(args.out / "target.jsonl", "w") as f:
        f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in target)
    print(f"{'target':16s} {len(target):6,d} documents {sum(len(d['text']) for d in target):11,d} characters")


if __name__ == "__main__":
    main()
