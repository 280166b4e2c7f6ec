"""Stable ids and content fingerprints. No id or digest depends on time or on where a file lives (a digest's memo
is keyed by both, and only spares a read)."""

from __future__ import annotations

import hashlib
import json
import os
import time
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


_STAT_CACHE: dict[tuple, str] = {}
PERSIST_MIN_BYTES = 1 << 20  # below this, reading the file is as cheap as reading its memo
# File times come from a coarse clock: a file changed within the last moments may change again with the same stat, so
# its digest is not memoised on disk until it has been still for this long (as git treats its index's racy entries).
SETTLED_NS = 2_000_000_000


def cache_root() -> Path:
    """Shared across work directories: downloads, GGUF conversions and file digests are paid once per machine."""
    return Path(os.environ.get("MINIPLM_CACHE", Path.home() / ".cache" / "miniplm")).expanduser()


def file_sha256(path: str | Path) -> str:
    """Full sha256 of a file, memoised by its identity and stat (device, inode, size, mtime and ctime): in the
    process, and for large files on disk, so that a checkpoint or corpus file is read once per machine, not once
    per run (a run resolves its teacher in every process, and some disks read a 540 MB checkpoint in a minute).
    Any write to the file changes its ctime, which no tool can set back, so a changed file is always read again."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key in _STAT_CACHE:
        return _STAT_CACHE[key]
    settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS
    memo = cache_root() / "digests" / stable_hash(*key) if st.st_size >= PERSIST_MIN_BYTES and settled else None
    digest = _read_memo(memo) if memo else None
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        if memo:
            _write_memo(memo, digest)
    _STAT_CACHE[key] = digest
    return digest


def _read_memo(memo: Path) -> str | None:
    try:
        text = memo.read_text().strip()
    except OSError:
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _write_memo(memo: Path, digest: str) -> None:
    from miniplm.store.shards import temporary_name  # unique per writer: threads of one process never share it

    try:  # atomic, so a concurrent reader sees the whole digest or none; a read-only cache only costs the speed-up
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_name(memo)
        tmp.write_text(digest)
        os.replace(tmp, memo)
    except OSError:
        pass


def tree_fingerprint(root: str | Path, patterns: tuple[str, ...] = ("*",)) -> str:
    """Content fingerprint of the files under a directory (relative names and bytes)."""
    root = Path(root)
    files = sorted({p for pat in patterns for p in root.rglob(pat) if p.is_file()})
    parts = [(str(p.relative_to(root)), file_sha256(p)) for p in files if not p.name.startswith(".")]
    return stable_hash(parts)


def code_fingerprint() -> str:
    """Fingerprint of the library's own code and SQL: a change to either invalidates cached steps."""
    root = Path(__file__).parents[1]  # the miniplm package, every subpackage and the SQL
    return tree_fingerprint(root, ("*.py", "*.sql"))
