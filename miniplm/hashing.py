"""Stable ids and content fingerprints. Nothing here depends on time or on where a file lives."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Any

ID_HEX = 32  # 128-bit ids: collision odds stay negligible at billions of rows


def stable_hash(*parts: Any) -> str:
    """Hash of JSON-serialisable parts, in order."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:ID_HEX]


def normalize_text(text: str) -> str:
    """The text a document is identified by: NFC, Unix newlines, no trailing whitespace."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return text.rstrip()


def doc_id(normalized_text: str) -> str:
    return hashlib.sha256(normalized_text.encode("utf-8")).hexdigest()[:ID_HEX]


def instance_id(doc: str, chunk_index: int, instance_spec: str) -> str:
    return hashlib.sha256(f"{doc}:{chunk_index}:{instance_spec}".encode()).hexdigest()[:ID_HEX]


def unit_interval(seed: int, salt: str, key: str) -> float:
    """A seeded, uniform draw in [0, 1) that depends only on (seed, salt, key)."""
    digest = hashlib.sha256(f"{seed}:{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


_STAT_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """Full sha256 of a file, memoised per (path, size, mtime) within the process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _STAT_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _STAT_CACHE[key] = h.hexdigest()
    return _STAT_CACHE[key]


def tree_fingerprint(root: str | Path, patterns: tuple[str, ...] = ("*",)) -> str:
    """Content fingerprint of the files under a directory (relative names and bytes)."""
    root = Path(root)
    files = sorted({p for pat in patterns for p in root.rglob(pat) if p.is_file()})
    parts = [(str(p.relative_to(root)), file_sha256(p)) for p in files if not p.name.startswith(".")]
    return stable_hash(parts)


def code_fingerprint() -> str:
    """Fingerprint of the library's own code and SQL: a change to either invalidates cached steps."""
    root = Path(__file__).parent
    return tree_fingerprint(root, ("*.py", "*.sql"))
