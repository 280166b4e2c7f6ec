"""Build the real-text corpus of the committed experiment (docs/results.md) from Debian's documentation packages.

    apt-get install python3.11-doc linux-doc-6.1 dict-gcide
    python bench/debian_corpus.py OUT_DIR [--scale 1.0]

Writes one JSONL file per source into OUT_DIR/pool/ and the target set into OUT_DIR/target.jsonl, and prints what
each holds. The pool mixes text of clearly different quality, so that which data a selection keeps matters:

  python_docs     the Python 3.11 documentation's reStructuredText sources, one document per section: edited
                  technical prose, the kind of text the target set is
  kernel_docs     the Linux kernel's documentation (reStructuredText), one document per section: prose of another
                  domain, of uneven editing
  dictionary      GCIDE (Webster's 1913 and additions), 25 consecutive entries per document: terse, abbreviated
  python_code     the standard library's Python source files, cut at top-level definitions: code
  python_html     the HTML pages of the Python documentation, cut into pieces: markup around little prose
  degraded_prose  kernel documentation sections (others than kernel_docs holds) degraded by machine: characters
                  swapped, words shuffled within a line, spaces lost, as bad OCR or scraping leaves them

The target set is the sections of the Python documentation's files set apart by a hash of their path (an eighth):
high-quality documents of a source the pool also holds, never in the pool in any form (their HTML pages are left
out of python_html too). Everything is deterministic: the same packages give the same files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
from pathlib import Path

PY_DOCS = Path("/usr/share/doc/python3.11/html")
KERNEL_DOCS = Path("/usr/share/doc/linux-doc-6.1/Documentation")
GCIDE = Path("/usr/share/dictd/gcide.dict.dz")
STDLIB = Path("/usr/lib/python3.11")

# characters per source at scale 1 (about 4 characters per token of prose, 3 of code and markup)
BUDGET = {
    "python_docs": 2_800_000,
    "kernel_docs": 1_800_000,
    "dictionary": 1_100_000,
    "python_code": 1_000_000,
    "python_html": 1_100_000,
    "degraded_prose": 1_000_000,
}
TARGET_SHARE = 1 / 8
MIN_SECTION_CHARS = 300
MAX_DOC_CHARS = 12_000
HEADING = re.compile(r"^(=+|-+|~+|\^+|\*+|#+|\"+)\s*$")


def digest(*parts: str) -> float:
    return int.from_bytes(hashlib.sha256(":".join(parts).encode()).digest()[:8], "big") / 2**64


def is_target(relpath: str) -> bool:
    return digest("target", relpath) < TARGET_SHARE


def read_text(path: Path) -> str:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return raw.decode("utf-8", "replace")


def sections(text: str) -> list[str]:
    """A reStructuredText file cut before each heading (a title line underlined), long pieces cut at blank lines."""
    lines = text.splitlines()
    starts = [0] + [i - 1 for i in range(1, len(lines)) if HEADING.match(lines[i]) and lines[i - 1].strip()
                    and len(lines[i].strip()) >= len(lines[i - 1].strip()) - 1]  # fmt: skip
    pieces = ["\n".join(lines[a:b]).strip() for a, b in zip(starts, starts[1:] + [len(lines)], strict=True)]
    out = []
    for piece in pieces:
        while len(piece) > MAX_DOC_CHARS:
            cut = piece.rfind("\n\n", 0, MAX_DOC_CHARS)
            cut = cut if cut > MAX_DOC_CHARS // 2 else MAX_DOC_CHARS
            out.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        out.append(piece)
    return [p for p in out if len(p) >= MIN_SECTION_CHARS]


def take(docs: list[dict], budget: int, salt: str) -> list[dict]:
    """A seeded choice of documents up to `budget` characters, in a stable order."""
    order = sorted(docs, key=lambda d: digest(salt, d["id"]))
    chosen, used = [], 0
    for d in order:
        if used + len(d["text"]) > budget:
            continue
        chosen.append(d)
        used += len(d["text"])
    return sorted(chosen, key=lambda d: d["id"])


def python_docs() -> tuple[list[dict], list[dict]]:
    pool, target = [], []
    for path in sorted((PY_DOCS / "_sources").rglob("*.rst.txt")):
        rel = str(path.relative_to(PY_DOCS / "_sources"))
        for i, text in enumerate(sections(read_text(path))):
            (target if is_target(rel) else pool).append({"id": f"{rel}#{i}", "text": text})
    return pool, target


def kernel_sections() -> list[dict]:
    docs = []
    for path in sorted(KERNEL_DOCS.rglob("*.rst*")):
        rel = str(path.relative_to(KERNEL_DOCS))
        docs += [{"id": f"{rel}#{i}", "text": t} for i, t in enumerate(sections(read_text(path)))]
    return docs


def dictionary() -> list[dict]:
    data = gzip.decompress(GCIDE.read_bytes())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def b64(s: str) -> int:
        n = 0
        for ch in s:
            n = n * 64 + alphabet.index(ch)
        return n

    entries = []
    for line in GCIDE.with_name("gcide.index").read_text("utf-8", "replace").splitlines():
        head, off, length = line.split("\t")
        if not head.startswith("00-"):
            entries.append(data[b64(off) : b64(off) + b64(length)].decode("utf-8", "replace").strip())
    entries = list(dict.fromkeys(entries))  # a headword listed twice points at the same text
    return [{"id": f"gcide:{i}", "text": "\n\n".join(entries[i : i + 25])} for i in range(0, len(entries), 25)]


def python_code() -> list[dict]:
    docs = []
    for path in sorted(STDLIB.glob("*.py")):
        text = path.read_text("utf-8", "replace")
        starts = [0] + [m.start() for m in re.finditer(r"^(?:def|class) ", text, re.M)]
        piece_start = 0
        for cut in starts[1:] + [len(text)]:
            if cut - piece_start >= 4000 or cut == len(text):
                piece = text[piece_start:cut].strip()
                if len(piece) >= MIN_SECTION_CHARS:
                    docs.append({"id": f"{path.name}@{piece_start}", "text": piece[:MAX_DOC_CHARS]})
                piece_start = cut
    return docs


def python_html() -> list[dict]:
    docs = []
    for path in sorted(PY_DOCS.rglob("*.html")):
        rel = str(path.relative_to(PY_DOCS))
        if rel.startswith(("_", "genindex")) or is_target(rel.removesuffix(".html") + ".rst.txt"):
            continue
        text = path.read_text("utf-8", "replace")
        for i in range(0, len(text), 8000):
            docs.append({"id": f"{rel}@{i}", "text": text[i : i + 8000]})
    return docs


def degrade(text: str, rng: random.Random) -> str:
    """One of three machine faults, as scraped or badly recognized text shows them."""
    kind = rng.randrange(3)
    if kind == 0:  # characters swapped for neighbours on the keyboard row, or for look-alikes
        chars = list(text)
        for i in range(len(chars)):
            if chars[i].isalpha() and rng.random() < 0.12:
                chars[i] = rng.choice("rnmclIl1oO0eaitsuv")
        return "".join(chars)
    if kind == 1:  # the words of each line shuffled
        lines = []
        for line in text.splitlines():
            words = line.split()
            rng.shuffle(words)
            lines.append(" ".join(words))
        return "\n".join(lines)
    return re.sub(r"\s+", lambda m: "" if rng.random() < 0.6 else " ", text)  # spaces and line ends lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every source's character budget")
    args = parser.parse_args()
    budget = {k: int(v * args.scale) for k, v in BUDGET.items()}
    docs_pool, target = python_docs()
    kernel = kernel_sections()
    kernel_kept = take(kernel, budget["kernel_docs"], "kernel")
    kept_ids = {d["id"] for d in kernel_kept}
    rng = random.Random(0)
    degraded = [
        {"id": f"degraded:{d['id']}", "text": degrade(d["text"], rng)}
        for d in take([d for d in kernel if d["id"] not in kept_ids], budget["degraded_prose"], "degraded")
    ]
    sources = {
        "python_docs": take(docs_pool, budget["python_docs"], "python_docs"),
        "kernel_docs": kernel_kept,
        "dictionary": take(dictionary(), budget["dictionary"], "dictionary"),
        "python_code": take(python_code(), budget["python_code"], "python_code"),
        "python_html": take(python_html(), budget["python_html"], "python_html"),
        "degraded_prose": degraded,
    }
    (args.out / "pool").mkdir(parents=True, exist_ok=True)
    for name, docs in sources.items():
        with open(args.out / "pool" / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
        print(f"{name:15s} {len(docs):6,d} documents {sum(len(d['text']) for d in docs):11,d} characters")
    with open(args.out / "target.jsonl", "w") as f:
        f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in target)
    print(f"{'target':15s} {len(target):6,d} documents {sum(len(d['text']) for d in target):11,d} characters")


if __name__ == "__main__":
    main()
