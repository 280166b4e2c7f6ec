"""A controlled corpus whose right selection is known by construction, from real text (Debian's packages).

    apt-get install python3.11-doc linux-doc-6.1
    python bench/controlled_corpus.py OUT_DIR [--scale 1.0]

Writes one JSONL file per kind into OUT_DIR/pool/ and the target set into OUT_DIR/target.jsonl:

  clean_prose      the Python documentation's sections: edited prose (valuable)
  technical        the Linux kernel's documentation sections: dense technical prose (hard but clean: valuable)
  code             the standard library's Python source: code (hard but clean: valuable)
  boilerplate      Debian's copyright files: licence texts repeated across hundreds of packages (easy and common:
                   worth little after the first few)
  degraded_copies  copies of clean_prose documents degraded by machine (characters swapped, words shuffled, spaces
                   lost: harmful)
  noise            random characters in words and lines (harmful)

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


def boilerplate() -> list[dict]:
    docs = []
    for path in sorted(COPYRIGHTS.glob("*/copyright")):
        text = path.read_text("utf-8", "replace").strip()
        if len(text) >= 300:
            docs.append({"id": f"copyright:{path.parent.name}", "text": text[:MAX_BOILERPLATE_CHARS]})
    return docs


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
    args = parser.parse_args()
    budget = {k: int(v * args.scale) for k, v in BUDGET.items()}
    rng = random.Random(0)
    valuable = {"clean_prose": clean_prose(), "technical": technical(), "code": python_code()}
    pool, target = {}, []
    for kind, docs in valuable.items():
        kept, held = split_by_file(docs)
        pool[kind] = take(kept, budget[kind], kind)
        target += take(held, int(TARGET_BUDGET[kind] * args.scale), f"target:{kind}")
    pool["boilerplate"] = take(boilerplate(), budget["boilerplate"], "boilerplate")
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
